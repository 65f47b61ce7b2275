"""The engine: the step loop over a built `Setup`, for any task.

Per step it feeds a batch to the compiled train step; a `LogWindow` turns the steps between two
log points into throughput, step time and ETA and checks that every step was finite; at each
epoch end it evaluates (the EMA weights too), writes metrics, keeps the best, saves checkpoints
on their cadence and calls the epoch callback (sweeps prune there).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import grain
import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from PIL import Image

from convnext_jax.data import create_loader, shard_batch
from convnext_jax.data.from_config import eval_transforms_of
from convnext_jax.data.robustness import eval_classes_of
from convnext_jax.data.sources import SKIPPED
from convnext_jax.errors import UserError
from convnext_jax.models.params import count_params, forward_macs
from convnext_jax.models.variants import display_name
from convnext_jax.text import plural
from convnext_jax.train.checkpoint import Checkpointer
from convnext_jax.train.confusion import write_confusion
from convnext_jax.train.evaluate import Evaluation, Evaluator, evaluator_of
from convnext_jax.train.memory_fit import device_peak_memory_bytes
from convnext_jax.train.metrics import MetricsWriter
from convnext_jax.train.parallel import state_bytes_per_device
from convnext_jax.train.preemption import Preempted, PreemptionWatch
from convnext_jax.train.progress import Progress
from convnext_jax.train.setup import Setup
from convnext_jax.train.short_run import summary_fields
from convnext_jax.train.state import TrainState
from convnext_jax.train.steps import make_train_step
from convnext_jax.train.tasks import selection_metric

EpochCallback = Callable[[int, dict[str, float]], None]


PICTURES_DIR = "pictures"


def picture_of(setup: Setup) -> tuple[Any, jax.Array] | None:
    """(jitted render(params, images), the fixed val images) for a task that draws pictures
    (FCMAE's reconstructions), or None."""
    count = setup.task.pictures
    if not count:
        return None
    loader = create_loader(
        setup.val_source,
        batch_size=min(count, len(setup.val_source)),
        shuffle=False,
        num_epochs=1,
        transforms=eval_transforms_of(setup.config),
        shard_options=grain.sharding.NoSharding(),
    )
    images = jax.device_put(next(iter(loader))["image"], setup.layout.sharding(jax.sharding.PartitionSpec()))
    graphdef, rest, task, inputs = setup.graphdef, setup.rest, setup.task, setup.inputs

    def render(params: Any, images: jax.Array) -> tuple[jax.Array, ...]:
        return task.picture_columns(nnx.merge(graphdef, params, rest), inputs.eval({"image": images})["image"])

    return jax.jit(render), images


class NonFiniteLossError(UserError, FloatingPointError):
    """The loss or gradient became NaN/inf; the workdir keeps the last good checkpoint."""


def micro_batches(batch: dict[str, np.ndarray], accum: int) -> dict[str, np.ndarray]:
    """[per-process batch, ...] -> [accum, micro-batch, ...], the layout the train step scans over."""
    return {k: np.asarray(v).reshape((accum, len(v) // accum) + np.shape(v)[1:]) for k, v in batch.items()}


DATA_WAIT_WARNING = 0.10  # warn when the steps spend more than this fraction of their time waiting for data


IN_MEMORY_SOURCES = ("embedded:", "synthetic")  # decoded arrays in memory: no files to read or decode


def data_wait_advice(setup: Setup, fraction: float) -> str | None:
    """The warning for a step loop that waits for data, or None when the figure says nothing about
    the input pipeline: on a CPU backend the step and the pipeline's threads share the same cores
    (the host is slow to fetch while the "device" computes; more workers take cores from the step)."""
    if jax.default_backend() == "cpu":
        return None
    config = setup.config
    head = (
        f"warning: {100 * fraction:.0f}% of the step time is spent waiting for data (the input pipeline is the "
        "bottleneck): "
    )
    if config.data.source.startswith(IN_MEMORY_SOURCES):
        return head + f"raise data.threads (now {config.data.threads or 'auto'}), or use a larger batch_size"
    return head + (
        f"raise data.workers (now {config.data.workers}), or train on a prepared dataset of smaller JPEGs "
        "(python -m convnext_jax.data.prepare)"
    )


class LogWindow:
    """The steps since the last log point: their finite flags (checked without a sync per step),
    their wall time (throughput, step time, ETA) and how much of it the loop waited for the next
    batch (the input pipeline's share: with asynchronous dispatch, the device keeps computing
    while the host fetches, so waiting here means the data did not keep up)."""

    def __init__(self, setup: Setup, workdir: str):
        self.global_batch, self.total = setup.config.batch_size, setup.total_steps
        self.loss_scaling, self.optim, self.workdir = setup.loss_scaling, setup.config.optim, workdir
        self.pending: list[tuple[int, jax.Array]] = []
        self.skipped_steps = 0
        self.total_wait = self.total_time = self.pending_wait = 0.0
        self.start()

    def start(self) -> None:
        """Begin a new window (after a log point, an evaluation or the compilation)."""
        self.began, self.steps, self.wait = time.perf_counter(), 0, 0.0

    def waited(self, seconds: float, device_idle: bool = True) -> None:
        """Time the loop spent waiting for a batch (counted when the step it fed is timed). Only a
        wait that outlasted the previous step counts: while the device still computes, waiting for
        the next batch costs nothing (on a CPU backend the pipeline's threads and the step share
        the cores, so the host is slow to fetch exactly while the device is busy)."""
        self.pending_wait = seconds if device_idle else 0.0

    def record(self, step: int, finite: jax.Array, timed: bool = True) -> None:
        self.pending.append((step, finite))
        self.steps += timed
        self.wait += self.pending_wait if timed else 0.0
        self.pending_wait = 0.0

    @property
    def data_wait_fraction(self) -> float | None:
        """Over every timed window so far: the share of the loop's time spent waiting for data."""
        return self.total_wait / self.total_time if self.total_time else None

    def close(self, done: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """The window's log values (train metrics, LR-free timing); raises NonFiniteLossError."""
        bad = [step for step, ok in jax.device_get(self.pending) if not ok]
        self.pending = []
        if bad and self.loss_scaling is None:
            raise NonFiniteLossError(
                f"non-finite loss/gradient at step {bad[0]} (latest: loss={metrics['loss']}, "
                f"grad_norm={metrics['grad_norm']}); the update was not applied and the last good checkpoint in "
                f"{self.workdir} is intact. Lower optim.lr, keep optim.clip_grad_norm > 0, or use float32."
            )
        self.skipped_steps += len(bad)
        values = {
            f"train_{k}" if k not in ("grad_norm", "loss_scale") else k: float(v)
            for k, v in metrics.items()
            if k != "finite"
        }
        if self.loss_scaling is not None:
            values["skipped_steps"] = self.skipped_steps
            if metrics["loss_scale"] < self.optim.loss_scale_min:
                raise NonFiniteLossError(
                    f"float16 loss scale fell to {metrics['loss_scale']:.3g} at step {done} after "
                    f"{self.skipped_steps} skipped non-finite steps (first at step {bad[0] if bad else '?'}): the "
                    f"loss itself is NaN/inf. The last good checkpoint in {self.workdir} is intact. Lower "
                    "optim.lr, or use bfloat16."
                )
        if self.steps:  # the compilation step is not timed
            elapsed = time.perf_counter() - self.began
            values["step_time_s"] = elapsed / self.steps
            values["img_per_s"] = self.steps * self.global_batch / max(elapsed, 1e-9)
            values["data_wait_s"] = self.wait
            values["data_wait_fraction"] = min(self.wait / max(elapsed, 1e-9), 1.0)
            self.total_wait += self.wait
            self.total_time += elapsed
        return values


def _done(metrics: dict[str, jax.Array]) -> bool:
    """Whether the step that produced `metrics` has finished on the device."""
    return all(leaf.is_ready() for leaf in jax.tree.leaves(metrics) if isinstance(leaf, jax.Array))


class BestSoFar:
    """The best value of the selected validation metric over every epoch of a run (resumed runs
    included), the best of each val top-1 (plain, EMA, the better of the two), and the first
    epoch whose val top-1 reached `target_accuracy`."""

    REPORTED = ("val_top1", "val_top1_ema", "val_top1_best")  # higher is better

    def __init__(self, metric: str, mode: str, target_accuracy: float):
        self.metric, self.better, self.target = metric, (max if mode == "max" else min), target_accuracy
        self.best: float | None = None
        self.bests: dict[str, float] = {}
        self.epochs_to_target: int | None = None

    def add(self, epoch: int | None, metrics: dict[str, Any]) -> None:
        for name in self.REPORTED:
            if name in metrics:
                self.bests[name] = max(self.bests.get(name, metrics[name]), metrics[name])
        if self.metric not in metrics:
            return
        value = metrics[self.metric]
        self.best = value if self.best is None else self.better(self.best, value)
        reached = self.target and metrics.get("val_top1", 0.0) >= self.target
        if self.epochs_to_target is None and reached and epoch is not None:
            self.epochs_to_target = epoch

    def summary(self) -> dict[str, Any]:
        """best_<metric> for each reported top-1 and the selected metric, and which one selects."""
        return {
            **{f"best_{name}": value for name, value in self.bests.items()},
            f"best_{self.metric}": self.best,
            "selected_on": self.metric,
        }


def checkpoint_due(config: Any, epoch: int, done: int, total_steps: int) -> bool:
    """Save at every `checkpoint.every_epochs`-th epoch end and at the last step."""
    return epoch % config.checkpoint.every_epochs == 0 or done == total_steps


def run_summary(
    setup: Setup,
    state: TrainState,
    *,
    last_eval: dict[str, Any],
    evaluation: Evaluation,
    best: BestSoFar,
    window: LogWindow,
    throughputs: list[float],
    compile_s: float | None,
    skipped_images: int,
) -> dict[str, Any]:
    """summary.json of a run that reached its last step: what ran, how fast, the best and final metrics."""
    config = setup.config
    return {
        "steps": setup.total_steps,
        "epochs": config.num_epochs,
        "num_classes": setup.num_classes,
        "global_batch": config.batch_size,
        "grad_accum_steps": setup.accum,
        **(setup.memory_fit.summary() if setup.memory_fit else {}),
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "mesh": dict(setup.layout.mesh.shape),
        "state_bytes_per_device": state_bytes_per_device(state),
        "params": count_params(state.params),
        "gmacs_per_image": forward_macs(setup.model_cfg, config.data.image_size) / 1e9,
        "img_per_s": float(np.median(throughputs)) if throughputs else None,
        "compile_s": compile_s,
        "peak_memory_bytes": device_peak_memory_bytes(),
        "data_wait_fraction": window.data_wait_fraction,
        "skipped_images": skipped_images,
        "skipped_val_images": evaluation.skipped,
        **best.summary(),
        "epochs_to_target": best.epochs_to_target,
        **({"skipped_steps": window.skipped_steps} if setup.loss_scaling else {}),
        **{f"final_{k}": v for k, v in last_eval.items()},
        **summary_fields(config, setup.total_steps),
        "model": display_name(config.model.name, setup.architecture),
    }


class Engine:
    """Runs a `Setup` from `start` to its last step, writing into `workdir`."""

    def __init__(
        self,
        setup: Setup,
        workdir: str,
        checkpointer: Checkpointer,
        writer: MetricsWriter,
        progress: Progress,
        epoch_callback: EpochCallback | None = None,
        preemption: PreemptionWatch | None = None,
    ):
        self.setup, self.workdir, self.checkpointer = setup, workdir, checkpointer
        self.writer, self.progress, self.epoch_callback = writer, progress, epoch_callback
        self.preemption = preemption
        self.last_save = (None, time.monotonic())  # (step, when)
        self.evaluate = evaluator_of(setup)
        self.micro_sharding = setup.layout.sharding(setup.layout.micro_batch_spec)
        self.picture = picture_of(setup)
        self.left_out: set[str] = set()  # unreadable evaluation images already named

    def _compile(self, state: TrainState, batch: dict[str, jax.Array], key: jax.Array) -> tuple[Any, float]:
        """Compile the train step once for these shapes (a later batch of another shape is an
        error, never a silent recompilation); returns it with the compile time."""
        s = self.setup
        step = make_train_step(
            s.graphdef,
            s.rest,
            s.tx,
            s.task,
            ema_decay=s.config.ema_decay,
            loss_scaling=s.loss_scaling,
            layout=s.layout,
            inputs=s.inputs,
        )
        began = time.perf_counter()
        compiled = jax.jit(step, donate_argnums=(0,)).lower(state, batch, key).compile()
        return compiled, time.perf_counter() - began

    def _evaluate(self, state: TrainState) -> tuple[dict[str, float], Evaluation]:
        """The val metrics of the weights and of the EMA (`*_ema`), and the weights' evaluation
        (its confusion counts and left-out images)."""
        evaluation = self.evaluate(state.params)
        self._note_left_out(evaluation, "val")
        metrics = dict(evaluation.metrics)
        if state.ema is not None:
            ema = self.evaluate(state.ema).metrics
            metrics.update({f"{k}_ema": v for k, v in ema.items() if k != "val_count"})
            if "val_top1" in metrics:  # select_on=best: the better weights at each evaluation
                metrics["val_top1_best"] = max(metrics["val_top1"], metrics["val_top1_ema"])
        return metrics, evaluation

    def run(self, state: TrainState, train_iter: Any, start: int, history: list[dict[str, Any]] = ()) -> dict[str, Any]:
        """Train from optimizer step `start`; returns the run's summary. `history`: the metric
        records of the steps before `start` (a resumed run's best and epochs-to-target count them)."""
        s, config = self.setup, self.setup.config
        base_key = jax.random.key(config.seed)
        window = LogWindow(s, self.workdir)
        best = BestSoFar(*selection_metric(config), config.target_accuracy)
        for record in history:
            best.add(record.get("epoch"), record)
        train_step, compile_s, last_eval, evaluation, throughputs, metrics = None, None, {}, None, [], {}
        warned_wait, skipped_files = False, set()
        for step in range(start, s.total_steps):
            fetch = time.perf_counter()
            batch = next(train_iter)
            self._note_skipped(batch.pop(SKIPPED, None), skipped_files)
            batch = shard_batch(micro_batches(batch, s.accum), self.micro_sharding)
            window.waited(time.perf_counter() - fetch, device_idle=train_step is None or _done(metrics))
            key = jax.random.fold_in(base_key, step)
            if train_step is None:  # compile once, run the first step, then start timing
                train_step, compile_s = self._compile(state, batch, key)
                state, metrics = train_step(state, batch, key)
                jax.block_until_ready(metrics)
                window.start()
                window.record(step + 1, metrics["finite"], timed=False)
            else:
                state, metrics = train_step(state, batch, key)
                window.record(step + 1, metrics["finite"])
            done = step + 1
            self.progress.advance()
            epoch_end = done % s.steps_per_epoch == 0
            if done % config.log_every == 0 or epoch_end:
                values = window.close(done, jax.device_get(metrics))
                throughputs += [values["img_per_s"]] if "img_per_s" in values else []
                if values.get("data_wait_fraction", 0.0) > DATA_WAIT_WARNING and not warned_wait:
                    warned_wait = True
                    advice = data_wait_advice(s, values["data_wait_fraction"])
                    if advice:
                        self.progress.message(advice)
                self.writer.write(done, **values, lr=s.schedule(done - 1))
                self.progress.report(done, values, eta_s=(s.total_steps - done) * values.get("step_time_s", 0.0))
            if epoch_end:
                last_eval, evaluation = self._end_of_epoch(state, train_iter, done, best)
            if self._periodic_save_due(done, epoch_end):
                self._save(done, state, train_iter)
            if self.preemption is not None and done < s.total_steps and self.preemption.should_stop(done):
                if self.last_save[0] != done:
                    self._save(done, state, train_iter)
                self.checkpointer.wait_until_finished()
                raise Preempted(done, self.preemption.received or "signal")
            if done % config.log_every == 0 or epoch_end:
                window.start()
        if not last_eval:  # resumed after the last step: report the restored model
            last_eval, evaluation = self._evaluate(state)
            best.add(None, last_eval)
        self._write_confusion(evaluation, last_eval)
        extra = self._evaluate_extra_sets(state)
        if extra:
            self.writer.write(s.total_steps, **extra)
            last_eval = {**last_eval, **extra}
        self.checkpointer.wait_until_finished()
        return run_summary(
            s,
            state,
            last_eval=last_eval,
            evaluation=evaluation,
            best=best,
            window=window,
            throughputs=throughputs,
            compile_s=compile_s,
            skipped_images=len(skipped_files),
        )

    def _write_picture(self, state: TrainState, epoch: int, done: int) -> None:
        """The task's picture of the fixed val images: WORKDIR/pictures/epoch_NNNN.png and TensorBoard."""
        render, images = self.picture
        grid = self.setup.task.picture_grid(jax.device_get(render(state.params, images)))
        if jax.process_index() == 0:
            os.makedirs(os.path.join(self.workdir, PICTURES_DIR), exist_ok=True)
            Image.fromarray(grid).save(os.path.join(self.workdir, PICTURES_DIR, f"epoch_{epoch:04d}.png"))
            self.writer.image(done, "reconstruction", grid)

    def _evaluate_extra_sets(self, state: TrainState) -> dict[str, float]:
        """eval.extra_sets on the final weights (and EMA): {SET_top1, SET_top5, SET_loss, SET_count, ..._ema}."""
        s, out = self.setup, {}
        for name, source in s.extra_sources.items():
            label = name.replace("/", "_").replace(":", "_")
            task = s.task.with_eval_classes(eval_classes_of(name))  # extra sets: classification only
            evaluator = Evaluator(
                source, eval_transforms_of(s.config), s.graphdef, s.rest, task, s.layout, s.micro_batch, s.inputs
            )
            weights = [("", state.params)] + ([("_ema", state.ema)] if state.ema is not None else [])
            for suffix, params in weights:
                result = evaluator(params)
                for key, value in result.metrics.items():
                    if suffix and key == "val_count":
                        continue
                    out[f"{label}_{key.removeprefix('val_')}{suffix}"] = value
                if not suffix:
                    self._note_left_out(result, name)
                    out[f"{label}_skipped"] = result.skipped
            self.progress.message(
                f"{name}: top-1 {out[f'{label}_top1']:.4f} top-5 {out[f'{label}_top5']:.4f}"
                + (f" (EMA top-1 {out[f'{label}_top1_ema']:.4f})" if state.ema is not None else "")
            )
        return out

    def _write_confusion(self, evaluation: Evaluation, last_eval: dict[str, Any]) -> None:
        """WORKDIR/confusion.png and per_class.csv of the final evaluation (up to 100 classes)."""
        if evaluation.confusion is None or jax.process_index() != 0:
            return
        s = self.setup
        write_confusion(
            evaluation.confusion,
            self.workdir,
            getattr(s.train_source, "class_names", None),
            title=f"{display_name(s.config.model.name, s.architecture)}: val top-1 {last_eval.get('val_top1', 0.0):.4f} "
            f"after {plural(s.config.num_epochs, 'epoch')}",
        )

    def _note_left_out(self, evaluation: Evaluation, what: str) -> None:
        """Name each unreadable evaluation image once (it is left out of the metrics, never replaced)."""
        for path in evaluation.left_out:
            if path not in self.left_out:
                self.left_out.add(path)
                self.progress.message(
                    f"warning: unreadable {what} image {path} is left out of the metrics (each is "
                    f"named once; summary.json counts them as skipped_val_images)"
                )

    def _note_skipped(self, skipped: Any, seen: set[str]) -> None:
        """Warn once per unreadable training image (named by the source, in any worker process)."""
        if skipped is None:
            return
        for path in (p for entry in np.asarray(skipped).ravel() for p in str(entry).split("\n") if p):
            if path not in seen:
                seen.add(path)
                self.progress.message(
                    f"warning: skipping unreadable image {path} (each is warned about once; "
                    "summary.json counts them as skipped_images)"
                )

    def _save(self, done: int, state: TrainState, train_iter: Any, metrics: dict[str, float] | None = None) -> None:
        self.checkpointer.save(done, state, train_iter, metrics=metrics)
        self.last_save = (done, time.monotonic())

    def _periodic_save_due(self, done: int, epoch_end: bool) -> bool:
        """checkpoint.every_steps / every_minutes (between the per-epoch saves). The wall clock is
        process 0's, broadcast at log boundaries, so that every process saves the same step."""
        cadence = self.setup.config.checkpoint
        if self.last_save[0] == done or done == self.setup.total_steps:
            return False
        if cadence.every_steps and done % cadence.every_steps == 0:
            return True
        if not cadence.every_minutes or (done % self.setup.config.log_every and not epoch_end):
            return False
        due = time.monotonic() - self.last_save[1] >= 60.0 * cadence.every_minutes
        if jax.process_count() > 1:
            due = bool(multihost_utils.broadcast_one_to_all(np.asarray(due)))
        return due

    def _end_of_epoch(
        self, state: TrainState, train_iter: Any, done: int, best: BestSoFar
    ) -> tuple[dict[str, float], Evaluation]:
        """Evaluate, record, checkpoint on the cadence, and call the epoch callback."""
        config = self.setup.config
        epoch = done // self.setup.steps_per_epoch
        metrics, evaluation = self._evaluate(state)
        best.add(epoch, metrics)
        self.writer.write(done, epoch=epoch, **metrics)
        self.progress.message(
            f"epoch {epoch}/{config.num_epochs}: "
            + " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "val_count")
        )
        if self.picture is not None:
            self._write_picture(state, epoch, done)
        if checkpoint_due(config, epoch, done, self.setup.total_steps):
            self._save(done, state, train_iter, metrics={best.metric: metrics[best.metric]})
        if self.epoch_callback is not None:
            self.epoch_callback(epoch, metrics)
        return metrics, evaluation
