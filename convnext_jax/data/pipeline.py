"""grain input pipelines: sampling (a seeded permutation per epoch, dealt to the processes), reading and
per-example transforms on threads (optionally in worker processes), batching, whole-batch transforms."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from convnext_jax.data import jpeg_region
from convnext_jax.data.images import BadImageError
from convnext_jax.data.randaugment import rand_augment_from_string
from convnext_jax.data.resample import use_native
from convnext_jax.data.sources import SKIPPED
from convnext_jax.data.transforms import (
    IMAGENET_MEAN,
    ColorJitter,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ResizeCenterCrop,
    ToArray,
)


def train_transforms(
    image_size: int,
    *,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    auto_augment: str | None = None,
    color_jitter: float = 0.0,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    reduce: bool = True,
    image_ops: str = "auto",
) -> list:
    """timm's per-example training transform up to the uint8 pixels: RandomResizedCrop (JPEGs decoded
    at a reduced scale when the crop allows, `reduce`), flip, RandAugment *or* colour jitter (timm
    skips jitter when auto_augment is set). Normalisation, mixup/cutmix and random erasing follow
    on the device (`on_device.InputStage`). `image_ops`: resizes and warps in C++ ('native'),
    with Pillow ('pil') or native when it builds ('auto'); the same pixels either way."""
    native = _native_ops(image_ops)
    ops: list = [RandomResizedCrop(image_size, tuple(scale), tuple(ratio), reduce=reduce, native=native)]
    if hflip > 0:
        ops.append(RandomHorizontalFlip(hflip))
    if auto_augment:
        fill = tuple(int(round(255 * m)) for m in (mean or IMAGENET_MEAN))
        ops.append(dataclasses.replace(rand_augment_from_string(auto_augment, fill=fill), native=native))
    elif color_jitter > 0:
        ops.append(ColorJitter(color_jitter, color_jitter, color_jitter))
    return ops + [ToArray()]


def eval_transforms(image_size: int, *, crop_pct: float = 0.875, image_ops: str = "auto") -> list:
    """Resize the shorter side to image_size / crop_pct, centre crop, uint8 pixels (as timm's eval)."""
    return [ResizeCenterCrop(image_size, crop_pct, native=_native_ops(image_ops)), ToArray()]


def _native_ops(image_ops: str) -> bool:
    """Whether to use the native image ops; builds them (and the JPEG region decoder) here, once,
    before worker processes need them."""
    native = use_native(image_ops)
    if native:
        jpeg_region.decoder()
    return native


# py-spy --gil (2026-11-26): ~0.5 ms of GIL-held Python per image (grain, the transforms' glue, Pillow's colour
# ops) against ~2 ms of decoding/resampling without it, so one process saturates its GIL near 5 busy threads.
MAX_THREADS = 8


def default_threads(worker_count: int) -> int:
    """Threads per process that decode and augment: the cores shared among the worker processes
    (PIL releases the GIL while it decodes and resamples, so threads scale like processes), at most
    MAX_THREADS per process (more cores: use worker processes, data.workers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_THREADS, cores // max(1, worker_count)))


def apply_op(op: Any, record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One grain transform on one record (random ones draw from `rng`)."""
    return op.random_map(record, rng) if isinstance(op, grain.transforms.RandomMap) else op.map(record)


VALID = "valid"  # the record field of an evaluation pipeline: 0 for an unreadable image left out of the metrics
PLACEHOLDER_SIDE = 32  # the blank image whose transform stands in for a left-out one (its shape only)


@dataclasses.dataclass
class Examples(grain.transforms.RandomMap):
    """Reads record `index` from the source and runs the per-example transforms on it.

    An image that cannot be read (a bad header when the source opens it, bad pixels when a
    transform decodes it), when the source skips bad images (`on_bad_image="skip"`):
    - training (`leave_out=False`): replaced by the next readable one; every record of such a
      source names the replaced files in its `skipped` field (usually empty), so the training
      process can warn once per file and count them;
    - evaluation (`leave_out=True`): never replaced (that would count another image, often of
      another class): a blank placeholder of the right shape with `valid` = 0 takes its place,
      named in `skipped`, and the evaluator masks it out of every metric.
    Otherwise the BadImageError stops the pipeline.
    """

    source: Any
    transforms: Sequence[Any]
    leave_out: bool = False

    def random_map(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        skip = getattr(self.source, "on_bad_image", "error") == "skip"
        if self.leave_out:
            return self._evaluation_record(int(index), rng, skip)
        skipped: list[str] = []
        for offset in range(100):
            try:
                record = self._read(int(index) + offset, rng)
            except BadImageError as e:
                if not skip:
                    raise _with_hint(e) from e
                skipped.append(e.path or str(e))
                continue
            if skip:
                record[SKIPPED] = "\n".join(skipped)
            return record
        raise BadImageError(f"100 consecutive unreadable images from index {index}: {skipped[-1]}")

    def _read(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        record = self.source[index % len(self.source)]
        for op in self.transforms:
            record = apply_op(op, record, rng)
        return record

    def _evaluation_record(self, index: int, rng: np.random.Generator, skip: bool) -> dict[str, Any]:
        try:
            record, skipped, valid = self._read(index, rng), "", 1
        except BadImageError as e:
            if not skip:
                raise _with_hint(e) from e
            record, skipped, valid = self._placeholder(rng), e.path or str(e), 0
        record[SKIPPED], record[VALID] = skipped, np.int32(valid)
        return record

    def _placeholder(self, rng: np.random.Generator) -> dict[str, Any]:
        """A record shaped like every other (the transforms of a blank image), label 0."""
        record: dict[str, Any] = {"image": np.zeros((PLACEHOLDER_SIDE, PLACEHOLDER_SIDE, 3), np.uint8), "label": 0}
        for op in self.transforms:
            record = apply_op(op, record, rng)
        return record


def _with_hint(error: BadImageError) -> BadImageError:
    return BadImageError(
        f"{error}. Remove or fix the file, or set data.on_bad_image=skip (skip it and go on).", error.path
    )


class RepeatedAugmentation(grain.MapDataset):
    """timm's RepeatAugSampler over an epoch-major index stream: each epoch takes the first
    epoch_size / repeats images of its permutation, each `repeats` times in a row (each copy gets
    its own augmentation: random draws follow the stream position), and the epoch keeps its
    length. Inside every global batch the copies are dealt to different slots — (process,
    accumulation micro-step, device) — as timm deals them to different GPUs: consecutive stream
    elements go to consecutive slots, after the round-robin dealing to processes."""

    def __init__(
        self, parent: grain.MapDataset, *, epoch_size: int, repeats: int, global_batch: int, slots: int, processes: int
    ):
        super().__init__(parent)
        if global_batch % slots:
            raise ValueError(f"the global batch {global_batch} does not split into {slots} slots")
        self.epoch_size, self.repeats, self.global_batch = epoch_size, repeats, global_batch
        self.slots, self.processes = slots, processes
        self.per_process_slots = slots // processes
        self.rows = global_batch // slots  # per slot

    def __len__(self) -> int:
        return len(self._parent)

    def stream_position(self, position: int) -> int:
        """The position in the repeated stream [a, a, .., b, b, ..] that lands at `position` of the
        epoch (as dealt to processes, then split into contiguous slot chunks per process)."""
        batch, q = divmod(position, self.global_batch)
        if (batch + 1) * self.global_batch > self.epoch_size:
            return position  # the last, partial batch (dropped in training): no reordering
        process, local = q % self.processes, q // self.processes
        chunk, row = divmod(local, self.rows)
        return batch * self.global_batch + row * self.slots + process * self.per_process_slots + chunk

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self.slice(index)
        epoch, position = divmod(index, self.epoch_size)
        return self._parent[epoch * self.epoch_size + self.stream_position(position) // self.repeats]

    def __str__(self) -> str:
        return f"RepeatedAugmentation(repeats={self.repeats}, slots={self.slots})"


def create_loader(
    source: Any,
    *,
    batch_size: int,
    transforms: list,
    shuffle: bool,
    seed: int = 0,
    batch_transforms: Sequence[Any] = (),
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    worker_count: int = 0,
    worker_buffer_size: int = 2,
    shard_options: grain.sharding.ShardOptions | None = None,
    threads: int | None = None,
    repeats: int = 1,
    slots_per_process: int = 1,
    leave_out_bad: bool = False,
) -> grain.IterDataset:
    """A deterministic grain pipeline: the order and the augmentation draws depend only on (seed,
    epoch, shard, worker_count) (each worker process batches every worker_count-th example;
    resume with the same worker_count).

    `batch_size` is per process. Each epoch is a fresh permutation of the whole source, dealt
    round-robin to the processes (`shard_options`, default one shard per JAX process). Every
    process runs the per-example `transforms` on `threads` threads (default: its share of the
    cores); `worker_count` > 0 moves that work into worker processes. `iter(loader)` has
    `get_state`/`set_state` (and grain's orbax handlers) to restore the exact position.

    `repeats` > 1: repeated augmentation (`RepeatedAugmentation`), the copies of an image spread
    over the `slots_per_process` slots of every process (accumulation micro-steps x devices).

    `leave_out_bad` (evaluation): an unreadable image is never replaced by another; its slot in the
    batch has `valid` = 0 and its name in `skipped` (`Examples`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(source) == 0:
        raise ValueError("the data source is empty")
    if worker_count > 0:
        _ensure_absl_flags_parsed()
        _quiet_resource_tracker()
    shard_options = shard_options or grain.sharding.ShardByJaxProcess(drop_remainder=True)
    indices = grain.MapDataset.range(len(source)).seed(seed)
    if shuffle:
        indices = indices.shuffle()
    indices = indices.repeat(num_epochs)
    if repeats > 1:
        indices = RepeatedAugmentation(
            indices,
            epoch_size=len(source),
            repeats=repeats,
            global_batch=batch_size * shard_options.shard_count,
            slots=slots_per_process * shard_options.shard_count,
            processes=shard_options.shard_count,
        )
    if shard_options.shard_count > 1:
        indices = indices[shard_options.shard_index :: shard_options.shard_count]
    examples = indices.random_map(Examples(source, list(transforms), leave_out=leave_out_bad))
    read = grain.ReadOptions(num_threads=threads or default_threads(worker_count), prefetch_buffer_size=4 * batch_size)
    loader = examples.to_iter_dataset(read).batch(batch_size, drop_remainder=drop_remainder)
    for index, op in enumerate(batch_transforms):  # grain transforms of whole batches
        loader = (
            loader.random_map(op, seed=seed + 1 + index)
            if isinstance(op, grain.transforms.RandomMap)
            else loader.map(op)
        )
    if worker_count > 0:
        if not batch_transforms and hasattr(loader, "enable_shared_memory_output"):
            # Batches are stacked straight into shared memory (grain does this itself only for 2+ workers;
            # with one, every batch was stacked, then copied into shared memory).
            loader.enable_shared_memory_output()
        loader = loader.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=worker_count, per_worker_buffer_size=worker_buffer_size),
            worker_init_fn=ignore_interrupts,
        )
    return loader


def ignore_interrupts(worker_index: int = 0, worker_count: int = 0) -> None:
    """In a worker process: ignore Ctrl-C (the terminal sends SIGINT to the whole process group). The
    training process decides: it saves a checkpoint and stops its workers itself."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


TRACKER_WARNING = "ignore:resource_tracker:UserWarning"  # -W syntax: the message must not hold a colon


def _quiet_resource_tracker() -> None:
    """When a run stops early (Ctrl-C, an error), the batches grain's workers were writing are left
    in shared memory, and Python's resource tracker frees them at exit — correctly, but with a
    'leaked shared_memory objects' warning that asks nothing of the user. The tracker process
    takes its warning filters from sys.warnoptions when it starts (with the first worker)."""
    import sys

    if TRACKER_WARNING not in sys.warnoptions:
        sys.warnoptions.append(TRACKER_WARNING)


def _ensure_absl_flags_parsed() -> None:
    """grain's worker processes read absl flags; outside an absl app (pytest, notebooks) they are
    unparsed and grain fails with UnparsedFlagAccessError. Mark them parsed with their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
