"""The data pipeline's parts that a training config decides: the host transforms of training and
evaluation, and the normalisation (used by the on-device input stage and by pictures)."""

from __future__ import annotations

from typing import Any

import ml_collections

from convnext_jax.data.pipeline import eval_transforms, train_transforms


def normalisation(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The mean/std keyword arguments (None, None when data.normalize is off)."""
    if not config.data.normalize:
        return {"mean": None, "std": None}
    return {"mean": tuple(config.data.mean), "std": tuple(config.data.std)}


def train_transforms_of(config: ml_collections.ConfigDict) -> list:
    """The per-example host transforms of training (to uint8 pixels)."""
    aug = config.data.augment
    return train_transforms(
        config.data.image_size,
        scale=tuple(aug.scale),
        hflip=aug.hflip,
        auto_augment=aug.auto_augment or None,
        color_jitter=aug.color_jitter,
        mean=tuple(config.data.mean),
        image_ops=config.data.image_ops,
    )


def eval_transforms_of(config: ml_collections.ConfigDict) -> list:
    """The per-example host transforms of evaluation: resize, centre crop, uint8 pixels."""
    return eval_transforms(config.data.image_size, crop_pct=config.data.crop_pct, image_ops=config.data.image_ops)
