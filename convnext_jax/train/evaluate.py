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
from convnext_jax.data.on_device import InputStage
from convnext_jax.data.sources import SKIPPED
from convnext_jax.train.parallel import Layout
from convnext_jax.train.steps import make_eval_step
from convnext_jax.train.tasks.base import Task


def pad_batch(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Pad a batch to `size` examples, with mask=0 on the padding (each real example counts once)."""
    count = len(next(iter(batch.values())))
    padded = {k: np.concatenate([v, np.zeros((size - count,) + v.shape[1:], v.dtype)]) if count < size else v
              for k, v in batch.items()}
    padded["mask"] = (np.arange(size) < count).astype(np.float32)
    return padded


class Evaluator:
    """params -> the task's validation metrics over the whole split (pad-and-mask batches)."""

    def __init__(self, source: Any, transforms: list, graphdef: nnx.GraphDef, rest: nnx.State, task: Task,
                 layout: Layout, batch_size: int, inputs: InputStage | None = None):
        self.source, self.transforms, self.task, self.layout = source, transforms, task, layout
        self.batch_size = batch_size  # per process
        self.step = jax.jit(make_eval_step(graphdef, rest, task, layout, inputs))
        # Every process must run the same number of (collective) eval steps, even when the split
        # does not divide evenly over processes: shorter shards are padded with fully masked batches.
        shard_size = -(-len(source) // jax.process_count())
        self.num_batches = -(-shard_size // batch_size)
        self.images_per_second: float | None = None  # of the last call, after its first batch
        self.confusion: np.ndarray | None = None  # of the last call: [true, predicted] counts (<= 100 classes)

    def __call__(self, params: Any) -> dict[str, float]:
        loader = create_loader(self.source, batch_size=self.batch_size, shuffle=False, num_epochs=1,
                               drop_remainder=False, transforms=self.transforms,
                               shard_options=grain.sharding.ShardByJaxProcess(drop_remainder=False))
        sharding = self.layout.sharding(self.layout.batch_spec)
        totals, template = None, None
        batches = iter(loader)
        self.images_per_second, started, timed = None, None, 0
        for index in range(self.num_batches):
            if index == 1:  # the first batch (and the compilation) is not timed
                jax.block_until_ready(totals)
                started = time.perf_counter()
            batch = next(batches, None)
            if batch is None:  # this process's shard is exhausted: an all-padding batch
                batch = {k: v[:0] for k, v in template.items()}
            batch = {k: v for k, v in batch.items() if k != SKIPPED}  # host-side bookkeeping, not model input
            template = batch
            sums = self.step(params, shard_batch(pad_batch(batch, self.batch_size), sharding))
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
            timed += len(next(iter(batch.values()))) if index else 0
        totals = jax.device_get(totals)
        confusion = totals.pop("confusion", None)
        self.confusion = None if confusion is None else np.rint(np.asarray(confusion)).astype(np.int64)
        if started is not None and timed:
            self.images_per_second = timed * jax.process_count() / (time.perf_counter() - started)
        return self.task.eval_metrics(totals)


def evaluator_of(setup: Any) -> Evaluator:
    """The evaluator of a `Setup`: one micro-batch at a time (whatever fits a train micro-step fits
    its forward pass)."""
    from convnext_jax.train.setup import eval_transforms_of

    return Evaluator(setup.val_source, eval_transforms_of(setup.config), setup.graphdef, setup.rest, setup.task,
                     setup.layout, setup.micro_batch, setup.inputs)
