"""grain DataLoaders: sampling (seeded shuffle per epoch, per-process sharding), transforms, batching."""

from __future__ import annotations

from typing import Any, Sequence

import grain

from convnext_jax.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ResizeCenterCrop,
)


def train_transforms(image_size: int, *, scale: tuple[float, float] = (0.08, 1.0),
                     ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: float = 0.5,
                     mean: Sequence[float] | None = IMAGENET_MEAN, std: Sequence[float] | None = IMAGENET_STD) -> list:
    ops = [RandomResizedCrop(image_size, tuple(scale), tuple(ratio))]
    if hflip > 0:
        ops.append(RandomHorizontalFlip(hflip))
    return ops + [Normalize(_tuple(mean), _tuple(std))]


def eval_transforms(image_size: int, *, crop_pct: float = 0.875, mean: Sequence[float] | None = IMAGENET_MEAN,
                    std: Sequence[float] | None = IMAGENET_STD) -> list:
    return [ResizeCenterCrop(image_size, crop_pct), Normalize(_tuple(mean), _tuple(std))]


def _tuple(values: Sequence[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in values)


def create_loader(source: Any, *, batch_size: int, transforms: list, shuffle: bool, seed: int = 0,
                  num_epochs: int | None = None, drop_remainder: bool = True, worker_count: int = 0,
                  worker_buffer_size: int = 2, shard_options: grain.sharding.ShardOptions | None = None,
                  prefetch_threads: int = 8) -> grain.DataLoader:
    """A deterministic grain DataLoader: the order depends only on (seed, epoch, shard, worker_count)
    (grain hands out whole batches to workers round-robin; resume with the same worker_count).

    `batch_size` is per process. `shard_options` defaults to `ShardByJaxProcess` so each host of
    a multi-host job reads its own part. The iterator's state (`get_state`/`set_state`, or grain's
    orbax handlers) restores the exact position.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(source) == 0:
        raise ValueError("the data source is empty")
    if worker_count > 0:
        _ensure_absl_flags_parsed()
    shard_options = shard_options or grain.sharding.ShardByJaxProcess(drop_remainder=True)
    sampler = grain.samplers.IndexSampler(num_records=len(source), shard_options=shard_options, shuffle=shuffle,
                                          num_epochs=num_epochs, seed=seed)
    operations = list(transforms) + [grain.transforms.Batch(batch_size, drop_remainder=drop_remainder)]
    return grain.DataLoader(data_source=source, sampler=sampler, operations=operations, worker_count=worker_count,
                            worker_buffer_size=worker_buffer_size, shard_options=shard_options,
                            read_options=grain.ReadOptions(num_threads=prefetch_threads, prefetch_buffer_size=64))


def _ensure_absl_flags_parsed() -> None:
    """grain's worker processes read absl flags; outside an absl app (pytest, notebooks) they are
    unparsed and grain fails with UnparsedFlagAccessError. Mark them parsed with their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
