"""Evaluation over a whole val split: every example counted once, on every device and process."""

from __future__ import annotations

import time
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from convnext_jax.data import create_loader, shard_batch
from convnext_jax.data.from_config import eval_transforms_of
from convnext_jax.data.on_device import InputStage
from convnext_jax.data.pipeline import VALID
from convnext_jax.data.sources import SKIPPED
from convnext_jax.train.parallel import Layout
from convnext_jax.train.steps import make_eval_step
from convnext_jax.train.tasks.base import Task


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
    from jax.experimental import multihost_utils

    return int(np.sum(multihost_utils.process_allgather(np.asarray(value, np.int64))))


class Evaluator:
    """params -> the task's validation metrics over the whole split (pad-and-mask batches)."""

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
        self._compiled: Any = None
        self.images_per_second: float | None = None  # of the last call: reading, decoding and the model
        self.confusion: np.ndarray | None = None  # of the last call: [true, predicted] counts (<= 100 classes)
        self.left_out: list[str] = []  # of the last call: the unreadable images this process left out
        self.skipped = 0  # of the last call: unreadable images left out by every process

    def __call__(self, params: Any) -> dict[str, float]:
        """The metrics over the readable images; unreadable ones are left out (never replaced by another
        image), named in `left_out` and counted in `skipped`."""
        metrics = self._evaluate(params)
        self.skipped = _process_sum(len(self.left_out))
        return metrics

    def _evaluate(self, params: Any) -> dict[str, float]:
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
        totals, template, compile_s, images = None, None, 0.0, 0
        self.left_out = []
        started = time.perf_counter()
        batches = iter(loader)
        for _ in range(self.num_batches):
            batch = next(batches, None)
            if batch is None:  # this process's shard is exhausted: an all-padding batch
                batch = {k: v[:0] for k, v in template.items()}
            batch = dict(batch)
            self.left_out += [str(name) for name in np.asarray(batch.pop(SKIPPED, [])).ravel() if str(name)]
            valid = batch.pop(VALID, None)  # host-side bookkeeping, not model input
            template = batch
            images += len(next(iter(batch.values())))
            sharded = shard_batch(pad_batch(batch, self.batch_size, valid), sharding)
            if self._compiled is None:  # compiled once (every batch has one shape); not part of the timing
                began = time.perf_counter()
                self._compiled = self.step.lower(params, sharded).compile()
                compile_s = time.perf_counter() - began
            sums = self._compiled(params, sharded)
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        totals = jax.device_get(totals)
        confusion = totals.pop("confusion", None)
        self.confusion = None if confusion is None else np.rint(np.asarray(confusion)).astype(np.int64)
        elapsed = time.perf_counter() - started - compile_s
        self.images_per_second = images * jax.process_count() / elapsed if images and elapsed > 0 else None
        return self.task.eval_metrics(totals)


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
