"""grain DataLoaders: sampling (seeded shuffle per epoch, per-process sharding), transforms, batching."""

from __future__ import annotations

from typing import Any, Sequence

import grain

from convnext_jax.data.randaugment import rand_augment_from_string
from convnext_jax.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ColorJitter,
    Normalize,
    RandomErasing,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ResizeCenterCrop,
)


def train_transforms(image_size: int, *, scale: Sequence[float] = (0.08, 1.0),
                     ratio: Sequence[float] = (3 / 4, 4 / 3), hflip: float = 0.5, auto_augment: str | None = None,
                     color_jitter: float = 0.0, re_prob: float = 0.0,
                     mean: Sequence[float] | None = IMAGENET_MEAN, std: Sequence[float] | None = IMAGENET_STD) -> list:
    """timm's training transform: RandomResizedCrop, flip, RandAugment *or* color jitter (timm
    skips jitter when auto_augment is set), normalise, random erasing."""
    ops: list = [RandomResizedCrop(image_size, tuple(scale), tuple(ratio))]
    if hflip > 0:
        ops.append(RandomHorizontalFlip(hflip))
    if auto_augment:
        fill = tuple(int(round(255 * m)) for m in (mean or IMAGENET_MEAN))
        ops.append(rand_augment_from_string(auto_augment, fill=fill))
    elif color_jitter > 0:
        ops.append(ColorJitter(color_jitter, color_jitter, color_jitter))
    ops.append(Normalize(_tuple(mean), _tuple(std)))
    if re_prob > 0:
        ops.append(RandomErasing(re_prob))
    return ops


def eval_transforms(image_size: int, *, crop_pct: float = 0.875, mean: Sequence[float] | None = IMAGENET_MEAN,
                    std: Sequence[float] | None = IMAGENET_STD) -> list:
    return [ResizeCenterCrop(image_size, crop_pct), Normalize(_tuple(mean), _tuple(std))]


def _tuple(values: Sequence[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in values)


def create_loader(source: Any, *, batch_size: int, transforms: list, shuffle: bool, seed: int = 0,
                  batch_transforms: Sequence[Any] = (),
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
    operations += list(batch_transforms)  # e.g. MixupCutmix, on whole batches
    return grain.DataLoader(data_source=source, sampler=sampler, operations=operations, worker_count=worker_count,
                            worker_buffer_size=worker_buffer_size, shard_options=shard_options,
                            read_options=grain.ReadOptions(num_threads=prefetch_threads, prefetch_buffer_size=64))


def _ensure_absl_flags_parsed() -> None:
    """grain's worker processes read absl flags; outside an absl app (pytest, notebooks) they are
    unparsed and grain fails with UnparsedFlagAccessError. Mark them parsed with their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
