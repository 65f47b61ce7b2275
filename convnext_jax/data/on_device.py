"""The input stage that runs on the device, inside the jitted step (timm's GPU prefetcher): uint8
pixels -> float, normalised; for training, mixup/cutmix with soft targets, then random erasing
(timm's RandomErasing, mode 'pixel').

Host batches cross process boundaries and the host->device link as uint8 (4x less than float32);
float batches are taken as already prepared and pass through unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from convnext_jax.data.mixup import MixupCutmix

ERASE_ATTEMPTS = 10  # timm's RandomErasing tries 10 boxes per image


def normalize(images: jax.Array, mean: Sequence[float] | None, std: Sequence[float] | None) -> jax.Array:
    """uint8 (N, H, W, C) -> float32 in [0, 1], then (x - mean) / std unless mean/std are None."""
    images = images.astype(jnp.float32) / 255.0
    if mean is not None and std is not None:
        images = (images - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
    return images


def erase_boxes(
    key: jax.Array,
    count: int,
    height: int,
    width: int,
    prob: float,
    min_area: float = 0.02,
    max_area: float = 1 / 3,
    min_aspect: float = 0.3,
) -> tuple[jax.Array, ...]:
    """Per image: (erase?, top, left, box height, box width), drawn as timm's RandomErasing: with
    probability `prob`, up to 10 attempts at a box of area U(min_area, max_area) x image area and
    log-uniform aspect in [min_aspect, 1/min_aspect], the first that fits strictly inside."""
    keys = jax.random.split(key, 4)
    apply = jax.random.uniform(keys[0], (count,)) < prob
    area = jax.random.uniform(keys[1], (count, ERASE_ATTEMPTS), minval=min_area, maxval=max_area) * height * width
    log_aspect = jax.random.uniform(
        keys[2], (count, ERASE_ATTEMPTS), minval=math.log(min_aspect), maxval=-math.log(min_aspect)
    )
    aspect = jnp.exp(log_aspect)
    box_h = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    box_w = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (box_w < width) & (box_h < height)
    first = jnp.argmax(fits, axis=1)
    box_h = jnp.take_along_axis(box_h, first[:, None], 1)[:, 0]
    box_w = jnp.take_along_axis(box_w, first[:, None], 1)[:, 0]
    corner = jax.random.uniform(keys[3], (count, 2))
    top = jnp.floor(corner[:, 0] * (height - box_h + 1)).astype(jnp.int32)
    left = jnp.floor(corner[:, 1] * (width - box_w + 1)).astype(jnp.int32)
    return apply & fits.any(axis=1), top, left, box_h, box_w


def random_erasing(images: jax.Array, key: jax.Array, prob: float) -> jax.Array:
    """Replace one box per chosen image by per-pixel N(0, 1) noise (normalised images)."""
    count, height, width, channels = images.shape
    box_key, noise_key = jax.random.split(key)
    apply, top, left, box_h, box_w = erase_boxes(box_key, count, height, width, prob)
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(width)[None, None, :]
    inside = (
        (rows >= top[:, None, None])
        & (rows < (top + box_h)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + box_w)[:, None, None])
        & apply[:, None, None]
    )
    noise = jax.random.normal(noise_key, images.shape, images.dtype)
    return jnp.where(inside[..., None], noise, images)


@dataclasses.dataclass(frozen=True)
class InputStage:
    """What the step does to a batch's images before the model: normalise uint8 pixels, and in
    training mix the batch (`mixup`, integer labels -> soft targets) and erase boxes with
    probability `re_prob` (after mixup/cutmix, as timm's prefetcher)."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    re_prob: float = 0.0
    mixup: MixupCutmix | None = None

    def _images(self, batch: dict[str, Any]) -> jax.Array | None:
        images = batch.get("image")
        return images if images is not None and images.dtype == jnp.uint8 else None

    def eval(self, batch: dict[str, Any]) -> dict[str, Any]:
        images = self._images(batch)
        return batch if images is None else {**batch, "image": normalize(images, self.mean, self.std)}

    def train(self, batch: dict[str, Any], key: jax.Array) -> dict[str, Any]:
        images = self._images(batch)
        if images is None:
            return batch
        mix_key, erase_key = jax.random.split(key)
        images = normalize(images, self.mean, self.std)
        if self.mixup is not None:
            images, labels = self.mixup(images, batch["label"], mix_key)
            batch = {**batch, "label": labels}
        if self.re_prob > 0:
            images = random_erasing(images, erase_key, self.re_prob)
        return {**batch, "image": images}
