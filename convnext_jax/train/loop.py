"""The training loop: data -> jitted, donated train step on a data-parallel mesh -> eval,
metrics and checkpoints, with automatic, exact resume from the workdir."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from convnext_jax.data import MixupCutmix, create_loader, eval_transforms, make_source, shard_batch, train_transforms
from convnext_jax.data.device import data_sharding
from convnext_jax.models import create_model
from convnext_jax.train.checkpoint import Checkpointer
from convnext_jax.train.metrics import MetricsWriter, write_summary
from convnext_jax.train.optim import build_optimizer, lr_schedule, scaled_lr
from convnext_jax.train.steps import make_eval_step, make_train_step

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss or gradient became NaN/inf; the workdir keeps the last good checkpoint."""


def _normalisation(config: ml_collections.ConfigDict) -> dict[str, Any]:
    if not config.data.normalize:
        return {"mean": None, "std": None}
    return {"mean": tuple(config.data.mean), "std": tuple(config.data.std)}


def _pad_to(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Pad the last eval batch to a full batch, with mask=0 on the padding (each sample counts once)."""
    count = len(batch["label"])
    padded = {k: np.concatenate([v, np.zeros((size - count,) + v.shape[1:], v.dtype)]) if count < size else v
              for k, v in batch.items()}
    padded["mask"] = (np.arange(size) < count).astype(np.float32)
    return padded


def initialise_from(model: Any, path: str, *, reset_head: bool) -> None:
    """Load pretrained weights: a PyTorch file (timm/official) or a convnext_jax weights directory."""
    from convnext_jax.convert import export_pytorch_weights, load_pytorch_weights

    if os.path.isdir(path):
        from convnext_jax.flax_weights import load_model

        source = export_pytorch_weights(load_model(path))  # through the same key/shape checks
    else:
        source = path
    load_pytorch_weights(model, source, reset_head=reset_head)
    print(f"initialised from {path}" + (" (fresh classifier)" if reset_head else ""), flush=True)


def _check_batch(global_batch: int, accum: int) -> int:
    devices, processes = jax.device_count(), jax.process_count()
    if global_batch % accum:
        raise ValueError(f"batch_size {global_batch} is not divisible by optim.grad_accum_steps {accum}")
    micro = global_batch // accum
    if micro % devices:
        raise ValueError(f"the micro-batch ({global_batch} / {accum} accumulation steps = {micro}) is not divisible by "
                         f"the {devices} devices: use a batch_size that is a multiple of {devices * accum}")
    return micro // processes


def make_evaluator(config: ml_collections.ConfigDict, val_src: Any, graphdef: nnx.GraphDef, rest: nnx.State,
                   sharding: NamedSharding, batch_size: int) -> Callable[[Any], dict[str, float]]:
    """params -> val loss / top-1 / top-5 over the whole val split (pad-and-mask: each sample once)."""
    eval_step = jax.jit(make_eval_step(graphdef, rest))
    transforms = eval_transforms(config.data.image_size, crop_pct=config.data.crop_pct, **_normalisation(config))

    def evaluate(params: Any) -> dict[str, float]:
        loader = create_loader(val_src, batch_size=batch_size, shuffle=False, num_epochs=1, drop_remainder=False,
                               transforms=transforms)
        totals = None
        for batch in loader:
            sums = eval_step(params, shard_batch(_pad_to(batch, batch_size), sharding))
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        totals = jax.device_get(totals)
        count = max(float(totals["count"]), 1.0)
        return {"val_loss": float(totals["loss"]) / count, "val_top1": float(totals["top1"]) / count,
                "val_top5": float(totals["top5"]) / count, "val_count": int(totals["count"])}

    return evaluate


def _sources(config: ml_collections.ConfigDict) -> tuple[Any, Any]:
    """The train and val sources; val uses the train split's class names (image folders)."""
    train_src = make_source(config.data.source, "train", data_dir=config.data.data_dir or None,
                            image_size=config.data.image_size)
    val_src = make_source(config.data.source, "val", data_dir=config.data.data_dir or None,
                          image_size=config.data.image_size, class_names=getattr(train_src, "class_names", None))
    return train_src, val_src


def _model(config: ml_collections.ConfigDict, num_classes: int) -> Any:
    return create_model(config.model.name, num_classes=num_classes, drop_path_rate=config.model.drop_path_rate,
                        dtype=config.model.dtype, rngs=config.seed, **config.model.options.to_dict())


def _unwrap_variables(tree: Any) -> Any:
    """A restored nnx.State stores each Variable as {'value': array}; return the plain nested dict."""
    if isinstance(tree, dict):
        if set(tree) == {"value"}:
            return tree["value"]
        return {key: _unwrap_variables(value) for key, value in tree.items()}
    return tree


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, step: int | None = None) -> dict[str, Any]:
    """--mode eval: evaluate the params of a checkpoint in `workdir` (default: the latest) on the val split."""
    ckpt = Checkpointer(workdir, max_to_keep=config.checkpoint.keep)
    step = step or ckpt.latest_step()
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints to evaluate")
    per_process_batch = _check_batch(config.batch_size, config.optim.grad_accum_steps)
    train_src, val_src = _sources(config)
    model = _model(config, config.model.num_classes or train_src.num_classes)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    saved = ocp.StandardCheckpointer().restore(os.path.join(os.path.abspath(workdir), "checkpoints", str(step),
                                                            "state"))
    nnx.replace_by_pure_dict(params, _unwrap_variables(saved["params"]))
    sharding = data_sharding()
    params = jax.device_put(params, NamedSharding(sharding.mesh, PartitionSpec()))
    result = {"step": step, **make_evaluator(config, val_src, graphdef, rest, sharding, per_process_batch)(params)}
    with open(os.path.join(workdir, f"eval_{step}.json"), "w") as f:
        json.dump(result, f, indent=2)
    ckpt.close()
    return result


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Train `config` in `workdir`, resuming from its latest checkpoint if there is one."""
    os.makedirs(workdir, exist_ok=True)
    accum = config.optim.grad_accum_steps
    per_process_batch = _check_batch(config.batch_size, accum)
    train_src, val_src = _sources(config)
    num_classes = config.model.num_classes or train_src.num_classes
    steps_per_epoch = len(train_src) // config.batch_size  # optimizer steps
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {config.batch_size} is larger than the training set ({len(train_src)})")
    total_steps = config.num_epochs * steps_per_epoch
    micro_steps = total_steps * accum

    model = _model(config, num_classes)
    ckpt = Checkpointer(workdir, max_to_keep=config.checkpoint.keep)
    start = ckpt.latest_step() or 0
    if config.model.init_from and not start:
        initialise_from(model, config.model.init_from, reset_head=config.model.reset_head)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    peak_lr = scaled_lr(config.optim.lr, config.batch_size, rule=config.optim.lr_scaling,
                        base_batch=config.optim.lr_base_batch)
    warmup = config.optim.warmup_steps or config.optim.warmup_epochs * steps_per_epoch
    schedule = lr_schedule(peak_lr, total_steps, schedule=config.optim.schedule, warmup_steps=warmup,
                           min_lr=config.optim.min_lr)
    tx = build_optimizer(config.optim, params, schedule)

    mesh_sharding = data_sharding()
    replicated = NamedSharding(mesh_sharding.mesh, PartitionSpec())
    initial = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    if config.ema_decay > 0:
        initial["ema"] = jax.tree.map(jnp.copy, params)
    state = jax.device_put(initial, replicated)
    aug = config.data.augment
    batch_ops = []
    if aug.mixup_alpha > 0 or aug.cutmix_alpha > 0:
        batch_ops.append(MixupCutmix(num_classes, aug.mixup_alpha, aug.cutmix_alpha, aug.mixup_prob,
                                     aug.mixup_switch_prob, config.label_smoothing))
    train_loader = create_loader(
        train_src, batch_size=per_process_batch, shuffle=True, seed=config.seed, worker_count=config.data.workers,
        transforms=train_transforms(config.data.image_size, scale=tuple(aug.scale), hflip=aug.hflip,
                                    auto_augment=aug.auto_augment or None, color_jitter=aug.color_jitter,
                                    re_prob=aug.re_prob, **_normalisation(config)),
        batch_transforms=batch_ops)
    train_iter = iter(train_loader)

    if start:
        try:
            state = ckpt.restore(start, state, train_iter)
        except ValueError as e:
            raise ValueError(f"cannot resume from {workdir}/checkpoints/{start}: it was written by a different model or "
                             f"optimizer configuration ({e}). Use a new --workdir, or the original config.") from e
        log.info("resumed from %s at micro-step %d", workdir, start)
    metrics_writer = MetricsWriter(workdir, resume_step=start)

    train_step = jax.jit(make_train_step(graphdef, rest, tx, num_classes=num_classes,
                                         label_smoothing=config.label_smoothing, ema_decay=config.ema_decay,
                                         grad_accum_steps=accum), donate_argnums=(0,))
    evaluate = make_evaluator(config, val_src, graphdef, rest, mesh_sharding, per_process_batch * accum)
    base_key = jax.random.key(config.seed)

    compile_start = time.perf_counter()
    compile_s = None
    epochs_to_target = None
    best_top1, last_eval = 0.0, {}
    window_start, window_images = time.perf_counter(), 0
    micro_per_epoch = steps_per_epoch * accum
    for micro in range(start, micro_steps):
        batch = shard_batch(next(train_iter), mesh_sharding)
        state, metrics = train_step(state, batch, jax.random.fold_in(base_key, micro))
        if compile_s is None:
            jax.block_until_ready(metrics)
            compile_s = time.perf_counter() - compile_start
            window_start = time.perf_counter()
        window_images += config.batch_size // accum
        done = micro + 1
        if done % config.log_every == 0 or done % micro_per_epoch == 0:
            metrics = jax.device_get(metrics)
            if not metrics["finite"]:
                ckpt.wait_until_finished()
                raise NonFiniteLossError(
                    f"non-finite loss/gradient at step {done} (loss={metrics['loss']}, grad_norm={metrics['grad_norm']}); "
                    f"the update was not applied and the last good checkpoint in {workdir} is intact. "
                    "Lower optim.lr, keep optim.clip_grad_norm > 0, or use float32.")
            elapsed = time.perf_counter() - window_start
            img_s = window_images / max(elapsed, 1e-9)
            metrics_writer.write(done, train_loss=metrics["loss"], train_accuracy=metrics["accuracy"],
                                 grad_norm=metrics["grad_norm"], lr=schedule(done // accum), img_per_s=img_s,
                                 step_time_s=elapsed / max(window_images / (config.batch_size // accum), 1))
            eta = (micro_steps - done) * elapsed / max(window_images / (config.batch_size // accum), 1)
            print(f"step {done}/{micro_steps} loss {metrics['loss']:.4f} {img_s:.0f} img/s ETA {eta:.0f}s", flush=True)
            window_start, window_images = time.perf_counter(), 0
        if done % micro_per_epoch == 0:
            epoch = done // micro_per_epoch
            last_eval = evaluate(state["params"])
            if "ema" in state:
                last_eval.update({f"{k}_ema": v for k, v in evaluate(state["ema"]).items() if k != "val_count"})
            best_top1 = max(best_top1, last_eval["val_top1"])
            if epochs_to_target is None and config.target_accuracy and last_eval["val_top1"] >= config.target_accuracy:
                epochs_to_target = epoch
            metrics_writer.write(done, epoch=epoch, **last_eval)
            print(f"epoch {epoch}: val top-1 {last_eval['val_top1']:.4f} loss {last_eval['val_loss']:.4f}", flush=True)
            if epoch % config.checkpoint.every_epochs == 0 or done == micro_steps:
                ckpt.save(done, state, train_iter, metrics={"val_top1": last_eval["val_top1"]})
            window_start = time.perf_counter()
    if not last_eval:  # resumed after the last step: report the restored model
        last_eval = evaluate(state["params"])
        best_top1 = last_eval["val_top1"]
    ckpt.wait_until_finished()
    ckpt.close()
    metrics_writer.close()
    summary = {"steps": micro_steps, "epochs": config.num_epochs, "num_classes": num_classes,
               "compile_s": compile_s, "train_step_compilations": train_step._cache_size(), "best_val_top1": best_top1, "epochs_to_target": epochs_to_target,
               **{f"final_{k}": v for k, v in last_eval.items()}}
    write_summary(workdir, summary)
    return summary
