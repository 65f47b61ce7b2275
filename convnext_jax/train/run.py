"""A run in a workdir, start to finish: validate the config, come back to what is there (resume,
or report a finished run), build the setup, restore or initialise, run the engine, write the summary.
Also evaluation of a workdir's checkpoint with the config it was trained with."""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections

from convnext_jax import schema
from convnext_jax.errors import ConfigError
from convnext_jax.models.variants import display_name, variant_name
from convnext_jax.text import plural
from convnext_jax.train import config as train_config
from convnext_jax.train.checkpoint import Checkpointer, read_checkpoint_params
from convnext_jax.train.cluster import enable_compile_cache
from convnext_jax.train.curves import plot_curves
from convnext_jax.train.engine import Engine, EpochCallback
from convnext_jax.train.evaluate import checkpoint_evaluation, say_left_out
from convnext_jax.train.metrics import MetricsWriter, read_metrics, write_json
from convnext_jax.train.optim import refresh_hyperparameters
from convnext_jax.train.parallel import state_bytes_per_device
from convnext_jax.train.preemption import PreemptionWatch
from convnext_jax.train.progress import Progress
from convnext_jax.train.setup import Setup, build, warmup_steps_of
from convnext_jax.train.short_run import short_run_notes
from convnext_jax.train.state import TrainState
from convnext_jax.train.tasks import selection_metric
from convnext_jax.train.workdir import CURVES_FILE, METRICS_FILE, SUMMARY_FILE, RunDir


def _say(text: str) -> None:
    if jax.process_index() == 0:
        print(text, flush=True)


def describe_start(setup: Setup, start: int) -> str:
    """The start-up lines: what was found and what will run."""
    config, train = setup.config, setup.train_source
    lines = [
        f"data: {config.data.source}: {len(train)} train / {len(setup.val_source)} val images, "
        f"{setup.num_classes} classes; {setup.steps_per_epoch} steps of {config.batch_size} per epoch, "
        f"{plural(config.num_epochs, 'epoch')}"
    ]
    if setup.dropped_per_epoch:
        lines.append(
            f"note: {setup.dropped_per_epoch} of {len(train)} training images are left out of each epoch "
            f"(the last partial batch; a new random selection every epoch). A batch_size that divides "
            f"{len(train)} uses them all."
        )
    arch = setup.architecture
    name = setup.task.describe_model(display_name(config.model.name, arch))
    source = f" from {config.model.init_from}" if config.model.init_from else ""
    lines.append(
        f"model: {name}{source} {arch.depths} x {arch.dims}, "
        f"{config.model.dtype}, ops {setup.ops}; {jax.device_count()} device(s)"
        + (
            f", mesh {setup.layout.replicas // setup.layout.fsdp} data x {setup.layout.fsdp} fsdp "
            f"({state_bytes_per_device(setup.state) / 2**20:.1f} MiB of state per device)"
            if setup.layout.fsdp > 1
            else ""
        )
    )
    if setup.memory_fit:
        lines.append(setup.memory_fit.describe())
    if setup.pretrained:
        lines.append(setup.pretrained)
    lines += short_run_notes(
        config, setup.steps_per_epoch, setup.total_steps, warmup_steps_of(config, setup.steps_per_epoch)
    )
    if start:
        lines.append(f"resumed from step {start}/{setup.total_steps} (epoch {start // setup.steps_per_epoch})")
    return "\n".join(lines)


PRETRAIN_DIR = "pretrain"


def pretraining_stage(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The FCMAE pre-training run of a classification config with fcmae.pretrain_epochs: the same
    model, data and seed; the fcmae.* optimiser keys; no label-mixing or heavy augmentation."""
    stage = ml_collections.ConfigDict(config.to_dict())
    fc = stage.fcmae
    stage.task, stage.num_epochs, fc.pretrain_epochs = "fcmae", fc.pretrain_epochs, 0
    stage.optim.lr, stage.optim.weight_decay, stage.optim.b2 = fc.lr, fc.weight_decay, fc.b2
    stage.optim.warmup_epochs, stage.optim.warmup_steps, stage.optim.layer_decay = fc.warmup_epochs, 0, 0.0
    stage.label_smoothing, stage.ema_decay, stage.target_accuracy = 0.0, 0.0, 0.0
    stage.model.init_from, stage.model.reset_head, stage.model.drop_path_rate = "", False, 0.0
    aug = stage.data.augment
    aug.auto_augment, aug.color_jitter, aug.re_prob, aug.mixup_alpha, aug.cutmix_alpha = "", 0.0, 0.0, 0.0, 0.0
    stage.lock()
    return stage


def finetuning_stage(config: ml_collections.ConfigDict, pretrain_dir: str) -> ml_collections.ConfigDict:
    """The classification run after pre-training: from its encoder, for the remaining epochs."""
    stage = ml_collections.ConfigDict(config.to_dict())
    stage.num_epochs -= stage.fcmae.pretrain_epochs
    stage.fcmae.pretrain_epochs = 0
    stage.model.init_from, stage.model.reset_head = pretrain_dir, True
    stage.lock()
    return stage


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    epoch_callback: EpochCallback | None = None,
    *,
    extend: bool = False,
) -> dict[str, Any]:
    """Train `config` in `workdir` (see `train_run`); with fcmae.pretrain_epochs > 0, first pre-train
    the encoder with FCMAE in WORKDIR/pretrain, then fine-tune it for the remaining epochs (the
    summary counts both: `total_epochs`, `pretrain_*`). The config is validated here, once; the
    stages derived from it are valid by construction."""
    train_config.validate(config)
    enable_compile_cache(config.compile_cache)
    if not config.fcmae.pretrain_epochs:  # (the config allows it only for classification)
        return train_run(config, workdir, epoch_callback, extend=extend)
    pretrain_dir = os.path.join(workdir, PRETRAIN_DIR)
    _say(f"stage 1/2: FCMAE pre-training, {plural(config.fcmae.pretrain_epochs, 'epoch')}, in {pretrain_dir}")
    pretrained = train_run(pretraining_stage(config), pretrain_dir)
    _say(f"stage 2/2: fine-tuning, {plural(config.num_epochs - config.fcmae.pretrain_epochs, 'epoch')}, in {workdir}")
    summary = train_run(finetuning_stage(config, pretrain_dir), workdir, epoch_callback, extend=extend)
    summary.update(
        total_epochs=config.num_epochs,
        pretrain_epochs=config.fcmae.pretrain_epochs,
        pretrain_best_val_loss=pretrained.get("best_val_loss"),
    )
    if jax.process_index() == 0:
        write_json(RunDir(workdir).file(SUMMARY_FILE), summary)
    return summary


def train_run(
    config: ml_collections.ConfigDict,
    workdir: str,
    epoch_callback: EpochCallback | None = None,
    *,
    extend: bool = False,
) -> dict[str, Any]:
    """Train `config` in `workdir`, resuming from its latest checkpoint if there is one.

    Steps are optimizer steps; each consumes `batch_size` examples as `grad_accum_steps`
    micro-batches. A workdir that holds a run with another config is refused (listing what
    differs); a finished run is not trained again (its summary is returned); `extend=True` lets
    num_epochs grow. `epoch_callback(epoch, val_metrics)` runs after each epoch's evaluation and
    checkpoint (sweeps report to Optuna there; an exception it raises, e.g. TrialPruned, ends
    the run). `config` is validated (`train_and_evaluate`); nothing is written before the setup
    is built.
    """
    run = RunDir(workdir)
    if run.exists:
        run.check_resumable(config, extend=extend)
        finished = run.finished_summary(config)
        if finished is not None:
            _say(
                f"{run.path}: this run is finished ({plural(finished['epochs'], 'epoch')}, best "
                f"{_best_line(finished)}); results in {run.file(SUMMARY_FILE)} and {run.file(METRICS_FILE)}. "
                "To train it longer: --config.num_epochs=N --extend; for a new run use another --workdir."
            )
            return finished
    start = run.latest_step() or 0
    before = run.listing()
    writer = train_iter = None
    try:
        setup = build(config, load_pretrained=not start, memory_fit_dir=run.path)
        if jax.process_index() == 0 and (not run.exists or extend):
            run.write_config(with_resolved_name(config, setup.architecture))
            if hasattr(setup.train_source, "class_names"):
                run.write_class_names(list(setup.train_source.class_names))
        best_metric, best_mode = selection_metric(config)
        checkpointer = Checkpointer(
            run.path,
            keep_latest=config.checkpoint.keep,
            keep_best=config.checkpoint.keep_best,
            best_metric=best_metric,
            best_mode=best_mode,
        )
    except BaseException:
        if jax.process_index() == 0 and not start:
            run.remove_new_files(before)  # a failed start leaves nothing behind
        raise
    try:
        train_iter = iter(setup.train_loader)
        state = setup.state
        if start:
            state = _restore(checkpointer, start, state, train_iter, run.path)
        _say(describe_start(setup, start))
        history = (
            [r for r in read_metrics(run.path) if r.get("step", 0) <= start]
            if start and os.path.isfile(run.file(METRICS_FILE))
            else []
        )
        writer = MetricsWriter(run.path, resume_step=start, enabled=jax.process_index() == 0)
        progress = Progress(setup.total_steps, start, enabled=jax.process_index() == 0)
        try:
            with PreemptionWatch() as watch:
                engine = Engine(setup, run.path, checkpointer, writer, progress, epoch_callback, watch)
                summary = engine.run(state, train_iter, start, history)
        finally:
            progress.close()
    finally:
        checkpointer.close()  # also on errors: pending async saves finish, orbax threads stop cleanly
        _close(train_iter)  # worker processes stop, their shared-memory batches are freed
        if writer is not None:
            writer.close()
    summary["finished"] = True
    if jax.process_index() == 0:
        write_json(run.file(SUMMARY_FILE), summary)
        plot_curves(
            [(os.path.basename(run.path), read_metrics(run.path))],
            run.file(CURVES_FILE),
            val_metric=setup.task.best_metric,
        )
    return summary


def with_resolved_name(config: ml_collections.ConfigDict, architecture: Any) -> ml_collections.ConfigDict:
    """The config to store: a model built from weights (model.name '') gets the name of the variant
    whose architecture the weights have, so the run, validate and reports name it."""
    if config.model.name or not config.model.init_from:
        return config
    name = variant_name(architecture)
    if name is None:
        return config
    resolved = ml_collections.ConfigDict(config.to_dict())
    resolved.model.name = name
    resolved.lock()
    return resolved


def _close(iterator: Any) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def _best_line(summary: dict[str, Any]) -> str:
    best = {k: v for k, v in summary.items() if k.startswith("best_") and isinstance(v, float)}
    return ", ".join(f"{k[5:]} {v:.4f}" for k, v in best.items()) or "-"


def _restore(checkpointer: Checkpointer, step: int, state: TrainState, train_iter: Any, workdir: str) -> TrainState:
    try:
        restored = checkpointer.restore(step, state, train_iter)
    except ValueError as e:
        raise ConfigError(
            f"cannot resume from {workdir}/checkpoints/{step}: it was written by a different model, "
            f"optimizer or precision configuration ({str(e).splitlines()[0][:300]}). Use a new "
            "--workdir, or the original config."
        ) from e
    # the optimizer's numbers (LRs, weight decay, ...) come from the config, not the checkpoint
    return restored.replace(opt_state=refresh_hyperparameters(restored.opt_state, state.opt_state))


# ---------------------------------------------------------------------------------------------
# Evaluation of a workdir


def eval_config(stored: ml_collections.ConfigDict, overrides: dict[str, Any]) -> ml_collections.ConfigDict:
    """The config to evaluate a run with: the one it was trained with, `overrides` ({dotted key:
    value}) on top. What defines the model cannot change; the data, batch size and how the model
    runs can."""
    fixed = [k for k in train_config.run_keys() if k.startswith("model.") and k != "model.dtype"]
    config = ml_collections.ConfigDict(stored.to_dict())
    wrong = []
    for key, value in overrides.items():
        if schema.lookup(train_config.SCHEMA, key) is None:
            raise ConfigError(schema.unknown_key_message(train_config.SCHEMA, key))
        current = schema.flatten(stored).get(key)
        if key in fixed and value != current:
            wrong.append(f"{key}: trained with {current!r}, given {value!r}")
            continue
        node = config
        *parents, leaf = key.split(".")
        for name in parents:
            node = node[name]
        node[leaf] = value
    if wrong:
        raise ConfigError(
            "the checkpoint's model cannot change at evaluation: "
            + "; ".join(wrong)
            + ". Leave these keys out: the run's config.json has them."
        )
    config.lock()
    return config


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, step: int | None = None) -> dict[str, Any]:
    """--mode eval: the validation metrics of a checkpoint in `workdir` (default: the latest),
    written to WORKDIR/eval_STEP.json."""
    train_config.validate(config)
    enable_compile_cache(config.compile_cache)
    run = RunDir(workdir)
    step = step or run.latest_step()
    if step is None:
        raise ConfigError(f"no checkpoint in {run.path}/checkpoints to evaluate")
    weights = read_checkpoint_params(run.path, step)
    evaluation = checkpoint_evaluation(config, weights, f"the weights of {run.path} step {step}").run()
    result = {"step": step, **evaluation.metrics, "skipped_val_images": evaluation.skipped}
    say_left_out(evaluation, "val")
    if jax.process_index() == 0:
        write_json(run.file(f"eval_{step}.json"), result)
    return result
