"""Evaluation over a whole val split: every example counted once, on every device and process."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from convnext_jax.data import create_loader, shard_batch
from convnext_jax.data.from_config import eval_transforms_of
from convnext_jax.data.on_device import InputStage
from convnext_jax.data.pipeline import VALID
from convnext_jax.data.sources import SKIPPED
from convnext_jax.train.parallel import Layout
from convnext_jax.train.setup import model_setup
from convnext_jax.train.steps import make_eval_step
from convnext_jax.train.tasks.base import Task
from convnext_jax.weights import load_tree


def pad_batch(batch: dict[str, np.ndarray], size: int, valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Pad a batch to `size` examples, with mask=0 on the padding and on the examples that are not
    `valid` (unreadable images left out): each readable example counts once."""
    count = len(next(iter(batch.values())))
    padded = {
        k: np.concatenate([v, np.zeros((size - count,) + v.shape[1:], v.dtype)]) if count < size else v
        for k, v in batch.items()
    }
    mask = np.arange(size) < count
    if valid is not None:
        mask[:count] &= np.asarray(valid, bool)
    padded["mask"] = mask.astype(np.float32)
    return padded


def _process_sum(value: int) -> int:
    """`value` added up over every process."""
    if jax.process_count() == 1:
        return value
    return int(np.sum(multihost_utils.process_allgather(np.asarray(value, np.int64))))


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What one pass over an evaluation split found."""

    metrics: dict[str, float]  # the task's metrics over the readable images ("val_loss", ...; "val_count")
    confusion: np.ndarray | None  # [true, predicted] counts (classification, <= 100 classes)
    images_per_second: float | None  # reading, decoding and the model, the compilation left out
    left_out: tuple[str, ...]  # the unreadable images this process left out (never replaced by another)
    skipped: int  # unreadable images left out by every process


def say_left_out(evaluation: Evaluation, what: str) -> None:
    """One stderr line (process 0) per unreadable `what` image the evaluation left out."""
    if jax.process_index() == 0:
        for path in evaluation.left_out:
            print(
                f"warning: unreadable {what + ' ' if what else ''}image {path} is left out of the metrics",
                file=sys.stderr,
                flush=True,
            )


class Evaluator:
    """params -> an `Evaluation` of the task over the whole split (pad-and-mask batches)."""

    def __init__(
        self,
        source: Any,
        transforms: list,
        graphdef: nnx.GraphDef,
        rest: nnx.State,
        task: Task,
        layout: Layout,
        batch_size: int,
        inputs: InputStage | None = None,
    ):
        self.source, self.transforms, self.task, self.layout = source, transforms, task, layout
        self.batch_size = batch_size  # per process
        self.step = jax.jit(make_eval_step(graphdef, rest, task, layout, inputs))
        # Every process must run the same number of (collective) eval steps, even when the split
        # does not divide evenly over processes: shorter shards are padded with fully masked batches.
        shard_size = -(-len(source) // jax.process_count())
        self.num_batches = -(-shard_size // batch_size)
        self._compiled: Any = None  # compiled at the first call (every batch has one shape)

    def __call__(self, params: Any) -> Evaluation:
        """The task's metrics over the readable images; unreadable ones are left out and counted."""
        loader = create_loader(
            self.source,
            batch_size=self.batch_size,
            shuffle=False,
            num_epochs=1,
            drop_remainder=False,
            transforms=self.transforms,
            leave_out_bad=True,
            shard_options=grain.sharding.ShardByJaxProcess(drop_remainder=False),
        )
        sharding = self.layout.sharding(self.layout.batch_spec)
        totals, template, compile_s, images, left_out = None, None, 0.0, 0, []
        started = time.perf_counter()
        batches = iter(loader)
        for _ in range(self.num_batches):
            batch = next(batches, None)
            if batch is None:  # this process's shard is exhausted: an all-padding batch
                batch = {k: v[:0] for k, v in template.items()}
            batch = dict(batch)
            left_out += [str(name) for name in np.asarray(batch.pop(SKIPPED, [])).ravel() if str(name)]
            valid = batch.pop(VALID, None)  # host-side bookkeeping, not model input
            template = batch
            images += len(next(iter(batch.values())))
            sharded = shard_batch(pad_batch(batch, self.batch_size, valid), sharding)
            if self._compiled is None:  # not part of the timing
                began = time.perf_counter()
                self._compiled = self.step.lower(params, sharded).compile()
                compile_s = time.perf_counter() - began
            sums = self._compiled(params, sharded)
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        totals = jax.device_get(totals)
        confusion = totals.pop("confusion", None)
        elapsed = time.perf_counter() - started - compile_s
        return Evaluation(
            metrics=self.task.eval_metrics(totals),
            confusion=None if confusion is None else np.rint(np.asarray(confusion)).astype(np.int64),
            images_per_second=images * jax.process_count() / elapsed if images and elapsed > 0 else None,
            left_out=tuple(left_out),
            skipped=_process_sum(len(left_out)),
        )


def evaluator_of(setup: Any) -> Evaluator:
    """The evaluator of a `Setup`: one micro-batch at a time (whatever fits a train micro-step fits
    its forward pass)."""
    return Evaluator(
        setup.val_source,
        eval_transforms_of(setup.config),
        setup.graphdef,
        setup.rest,
        setup.task,
        setup.layout,
        setup.micro_batch,
        setup.inputs,
    )


@dataclasses.dataclass
class CheckpointEvaluation:
    """Weights and the evaluator of their run's val split, built without a train loader, optimizer
    or train state (`--mode eval`)."""

    evaluator: Evaluator
    params: Any

    def run(self) -> Evaluation:
        return self.evaluator(self.params)


def checkpoint_evaluation(config: Any, weights: Any, source: str) -> CheckpointEvaluation:
    """The run `config` describes, its model holding `weights` (a parameter tree; `source` names it
    in errors), ready to evaluate on the run's val split with the run's preprocessing."""
    parts = model_setup(config)
    load_tree(parts.model, weights, source=source)
    graphdef, params, rest = nnx.split(parts.model, nnx.Param, ...)
    task, layout = parts.task, parts.layout
    evaluator = Evaluator(
        parts.val_source,
        eval_transforms_of(config),
        graphdef,
        rest,
        task,
        layout,
        parts.micro_batch,
        task.input_stage(config),
    )
    return CheckpointEvaluation(evaluator, layout.place_state(params))
