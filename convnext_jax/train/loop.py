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
import grain
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from convnext_jax.data import MixupCutmix, create_loader, eval_transforms, make_source, shard_batch, train_transforms
from convnext_jax.data.device import data_sharding
from convnext_jax.models import count_params, create_model
from convnext_jax.models.flops import forward_macs
from convnext_jax.train.checkpoint import Checkpointer
from convnext_jax.train.metrics import MetricsWriter, write_summary
from convnext_jax.train.optim import build_optimizer, lr_schedule, scaled_lr
from convnext_jax.train.progress import Progress
from convnext_jax.train.steps import LossScaling, initial_train_state, make_eval_step, make_train_step

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss or gradient became NaN/inf; the workdir keeps the last good checkpoint."""


def normalisation(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The mean/std keyword arguments of the transforms (None, None when data.normalize is off)."""
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
    eval_step = jax.jit(make_eval_step(graphdef, rest, sharding.mesh, sharding.spec[0]))
    transforms = eval_transforms(config.data.image_size, crop_pct=config.data.crop_pct, **normalisation(config))

    # Every process must run the same number of (collective) eval steps, even when the val split
    # does not divide evenly over processes: shorter shards are padded with fully masked batches.
    shard_size = -(-len(val_src) // jax.process_count())
    num_batches = -(-shard_size // batch_size)

    def evaluate(params: Any) -> dict[str, float]:
        loader = create_loader(val_src, batch_size=batch_size, shuffle=False, num_epochs=1, drop_remainder=False,
                               transforms=transforms,
                               shard_options=grain.sharding.ShardByJaxProcess(drop_remainder=False))
        totals, template = None, None
        batches = iter(loader)
        for _ in range(num_batches):
            batch = next(batches, None)
            if batch is None:  # this process's shard is exhausted: an all-padding batch
                batch = {k: v[:0] for k, v in template.items()}
            template = batch
            sums = eval_step(params, shard_batch(_pad_to(batch, batch_size), sharding))
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        totals = jax.device_get(totals)
        count = max(float(totals["count"]), 1.0)
        return {"val_loss": float(totals["loss"]) / count, "val_top1": float(totals["top1"]) / count,
                "val_top5": float(totals["top5"]) / count, "val_count": int(totals["count"])}

    return evaluate


def data_sources(config: ml_collections.ConfigDict) -> tuple[Any, Any]:
    """The train and val sources; val uses the train split's class names (image folders)."""
    train_src = make_source(config.data.source, "train", data_dir=config.data.data_dir or None,
                            image_size=config.data.image_size)
    val_src = make_source(config.data.source, "val", data_dir=config.data.data_dir or None,
                          image_size=config.data.image_size, class_names=getattr(train_src, "class_names", None))
    return train_src, val_src


def model_from_config(config: ml_collections.ConfigDict, num_classes: int) -> Any:
    """The freshly initialised model the config describes (seeded by config.seed)."""
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
    ckpt.close()
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints to evaluate")
    per_process_batch = _check_batch(config.batch_size, config.optim.grad_accum_steps)
    train_src, val_src = data_sources(config)
    model = model_from_config(config, config.model.num_classes or train_src.num_classes)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    saved = ocp.StandardCheckpointer().restore(os.path.join(os.path.abspath(workdir), "checkpoints", str(step),
                                                            "state"))
    nnx.replace_by_pure_dict(params, _unwrap_variables(saved["params"]))
    sharding = data_sharding()
    params = jax.device_put(params, NamedSharding(sharding.mesh, PartitionSpec()))
    result = {"step": step, **make_evaluator(config, val_src, graphdef, rest, sharding, per_process_batch)(params)}
    if jax.process_index() == 0:
        with open(os.path.join(workdir, f"eval_{step}.json"), "w") as f:
            json.dump(result, f, indent=2)
    return result


def _micro_batches(batch: dict[str, np.ndarray], accum: int) -> dict[str, np.ndarray]:
    """[per-process batch, ...] -> [accum, micro-batch, ...], the layout the train step scans over."""
    return {k: np.asarray(v).reshape((accum, len(v) // accum) + np.shape(v)[1:]) for k, v in batch.items()}


def _loss_scaling(config: ml_collections.ConfigDict) -> LossScaling | None:
    if config.model.dtype != "float16":
        return None
    return LossScaling(init_scale=config.optim.loss_scale_init, growth_interval=config.optim.loss_scale_growth_interval)


EpochCallback = Callable[[int, dict[str, float]], None]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       epoch_callback: EpochCallback | None = None) -> dict[str, Any]:
    """Train `config` in `workdir`, resuming from its latest checkpoint if there is one.

    Steps are optimizer steps; each consumes `batch_size` examples as `grad_accum_steps`
    micro-batches. Checkpoints, metrics and the LR schedule count optimizer steps.
    `epoch_callback(epoch, val_metrics)` runs after each epoch's evaluation and checkpoint
    (sweeps report to Optuna there; an exception it raises, e.g. TrialPruned, ends the run).
    """
    os.makedirs(workdir, exist_ok=True)
    ckpt = Checkpointer(workdir, max_to_keep=config.checkpoint.keep)
    try:
        return _train(config, workdir, ckpt, epoch_callback)
    finally:
        ckpt.close()  # also on errors: pending async saves finish, orbax threads stop cleanly


def _train(config: ml_collections.ConfigDict, workdir: str, ckpt: Checkpointer,
           epoch_callback: EpochCallback | None) -> dict[str, Any]:
    accum = config.optim.grad_accum_steps
    per_process_batch = _check_batch(config.batch_size, accum) * accum
    train_src, val_src = data_sources(config)
    num_classes = config.model.num_classes or train_src.num_classes
    steps_per_epoch = len(train_src) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {config.batch_size} is larger than the training set ({len(train_src)})")
    total_steps = config.num_epochs * steps_per_epoch

    model = model_from_config(config, num_classes)
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
    loss_scaling = _loss_scaling(config)

    batch_sharding = data_sharding()
    mesh = batch_sharding.mesh
    train_sharding = NamedSharding(mesh, PartitionSpec(None, "data"))
    state = jax.device_put(initial_train_state(params, tx, ema=config.ema_decay > 0, loss_scaling=loss_scaling),
                           NamedSharding(mesh, PartitionSpec()))
    aug = config.data.augment
    batch_ops = []
    if aug.mixup_alpha > 0 or aug.cutmix_alpha > 0:
        batch_ops.append(MixupCutmix(num_classes, aug.mixup_alpha, aug.cutmix_alpha, aug.mixup_prob,
                                     aug.mixup_switch_prob, config.label_smoothing))
    train_loader = create_loader(
        train_src, batch_size=per_process_batch, shuffle=True, seed=config.seed, worker_count=config.data.workers,
        transforms=train_transforms(config.data.image_size, scale=tuple(aug.scale), hflip=aug.hflip,
                                    auto_augment=aug.auto_augment or None, color_jitter=aug.color_jitter,
                                    re_prob=aug.re_prob, **normalisation(config)),
        batch_transforms=batch_ops)
    train_iter = iter(train_loader)

    if start:
        try:
            state = ckpt.restore(start, state, train_iter)
        except ValueError as e:
            raise ValueError(f"cannot resume from {workdir}/checkpoints/{start}: it was written by a different model, "
                             f"optimizer or precision configuration ({e}). Use a new --workdir, or the original "
                             "config.") from e
        log.info("resumed from %s at step %d", workdir, start)
    metrics_writer = MetricsWriter(workdir, resume_step=start, enabled=jax.process_index() == 0)

    train_step = jax.jit(make_train_step(graphdef, rest, tx, num_classes=num_classes,
                                         label_smoothing=config.label_smoothing, ema_decay=config.ema_decay,
                                         loss_scaling=loss_scaling, mesh=mesh), donate_argnums=(0,))
    # eval runs one micro-batch at a time: whatever fits a train micro-step fits its forward pass
    evaluate = make_evaluator(config, val_src, graphdef, rest, batch_sharding, per_process_batch // accum)
    base_key = jax.random.key(config.seed)
    progress = Progress(total_steps, start, enabled=jax.process_index() == 0)

    compile_start = time.perf_counter()
    compile_s = None
    epochs_to_target = None
    skipped_steps = 0
    best_top1, last_eval = 0.0, {}
    window_start, window_steps = time.perf_counter(), 0
    pending_finite: list[tuple[int, jax.Array]] = []
    throughputs: list[float] = []
    # On any exit the bar is closed; train_and_evaluate closes the checkpointer, which waits for
    # pending saves, so the last good checkpoint is complete when an error propagates.
    try:
        for step in range(start, total_steps):
            batch = shard_batch(_micro_batches(next(train_iter), accum), train_sharding)
            state, metrics = train_step(state, batch, jax.random.fold_in(base_key, step))
            done = step + 1
            pending_finite.append((done, metrics["finite"]))
            if compile_s is None:
                jax.block_until_ready(metrics)
                compile_s = time.perf_counter() - compile_start
                window_start = time.perf_counter()
            else:
                window_steps += 1
            progress.advance()
            if done % config.log_every == 0 or done % steps_per_epoch == 0:
                metrics = jax.device_get(metrics)
                bad = [s for s, ok in jax.device_get(pending_finite) if not ok]
                pending_finite = []
                if bad and loss_scaling is None:
                    raise NonFiniteLossError(
                        f"non-finite loss/gradient at step {bad[0]} (latest: loss={metrics['loss']}, "
                        f"grad_norm={metrics['grad_norm']}); the update was not applied and the last good "
                        f"checkpoint in {workdir} is intact. Lower optim.lr, keep optim.clip_grad_norm > 0, or use "
                        "float32.")
                skipped_steps += len(bad)
                extra = {}
                if loss_scaling is not None:
                    extra = {"loss_scale": float(metrics["loss_scale"]), "skipped_steps": skipped_steps}
                    if metrics["loss_scale"] < config.optim.loss_scale_min:
                        raise NonFiniteLossError(
                            f"float16 loss scale fell to {metrics['loss_scale']:.3g} at step {done} after "
                            f"{skipped_steps} skipped non-finite steps (first at step {bad[0] if bad else '?'}): "
                            f"the loss itself is NaN/inf. The last good checkpoint in {workdir} is intact. Lower "
                            "optim.lr, or use bfloat16.")
                elapsed = time.perf_counter() - window_start
                step_time = elapsed / max(window_steps, 1)
                img_s = window_steps * config.batch_size / max(elapsed, 1e-9)
                if window_steps:
                    throughputs.append(img_s)
                metrics_writer.write(done, train_loss=metrics["loss"], train_accuracy=metrics["accuracy"],
                                     grad_norm=metrics["grad_norm"], lr=schedule(done - 1), img_per_s=img_s,
                                     step_time_s=step_time, **extra)
                progress.report(done, loss=float(metrics["loss"]), img_per_s=img_s,
                                eta_s=(total_steps - done) * step_time, **extra)
                window_start, window_steps = time.perf_counter(), 0
            if done % steps_per_epoch == 0:
                epoch = done // steps_per_epoch
                last_eval = evaluate(state["params"])
                if "ema" in state:
                    last_eval.update({f"{k}_ema": v for k, v in evaluate(state["ema"]).items() if k != "val_count"})
                best_top1 = max(best_top1, last_eval["val_top1"])
                reached = config.target_accuracy and last_eval["val_top1"] >= config.target_accuracy
                if epochs_to_target is None and reached:
                    epochs_to_target = epoch
                metrics_writer.write(done, epoch=epoch, **last_eval)
                progress.message(f"epoch {epoch}: val top-1 {last_eval['val_top1']:.4f} "
                                 f"loss {last_eval['val_loss']:.4f}")
                if epoch % config.checkpoint.every_epochs == 0 or done == total_steps:
                    ckpt.save(done, state, train_iter, metrics={"val_top1": last_eval["val_top1"]})
                if epoch_callback is not None:
                    epoch_callback(epoch, last_eval)
                window_start = time.perf_counter()
    finally:
        progress.close()
    if not last_eval:  # resumed after the last step: report the restored model
        last_eval = evaluate(state["params"])
        best_top1 = last_eval["val_top1"]
    ckpt.wait_until_finished()
    metrics_writer.close()
    summary = {"steps": total_steps, "epochs": config.num_epochs, "num_classes": num_classes,
               "global_batch": config.batch_size, "grad_accum_steps": accum, "devices": jax.device_count(),
               "processes": jax.process_count(), "params": count_params(params),
               "gmacs_per_image": forward_macs(model.cfg, config.data.image_size) / 1e9,
               "img_per_s": float(np.median(throughputs)) if throughputs else None, "compile_s": compile_s,
               "train_step_compilations": train_step._cache_size(), "best_val_top1": best_top1,
               "epochs_to_target": epochs_to_target, **({"skipped_steps": skipped_steps} if loss_scaling else {}),
               **{f"final_{k}": v for k, v in last_eval.items()}}
    if jax.process_index() == 0:
        write_summary(workdir, summary)
    return summary
