"""Mixup / CutMix on the device, inside the step, with label-smoothed soft targets (timm's `Mixup`,
mode='batch': one draw per batch, each image mixed with the batch reversed; under data
parallelism each device mixes its own batch, as each DDP rank does)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax


def pairing_problem(count: int, what: str = "the batch per device") -> str | None:
    """Why `count` images cannot be mixed in pairs (None when they can): the one rule behind the
    config's check, the setup's per-device check and the step's."""
    if count % 2:
        return f"mixup/cutmix pairs each image with another, so {what} ({count}) must be even"
    return None


def smooth_one_hot(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
    """(1 - smoothing) on the true class + smoothing / num_classes everywhere (timm/torch convention)."""
    return optax.smooth_labels(jax.nn.one_hot(labels, num_classes, dtype=jnp.float32), smoothing)


@dataclasses.dataclass(frozen=True)
class MixupCutmix:
    """With probability `prob` a batch is mixed: cutmix with probability `switch_prob` when both
    alphas are > 0, else the one that is on; lambda ~ Beta(alpha, alpha). CutMix's lambda is
    corrected to the clipped box's area (timm's correct_lam=True)."""

    num_classes: int
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"MixupCutmix needs num_classes >= 1, got {self.num_classes}")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError("mixup_alpha and cutmix_alpha must be >= 0")

    def params(self, key: jax.Array, height: int, width: int) -> dict[str, jax.Array]:
        """One batch's draw: lam (corrected for cutmix), cutmix (bool) and the box (top, bottom, left, right)."""
        keys = jax.random.split(key, 6)
        mixed = (jax.random.uniform(keys[0]) < self.prob) & (self.mixup_alpha > 0 or self.cutmix_alpha > 0)
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            cutmix = jax.random.uniform(keys[1]) < self.switch_prob
        else:
            cutmix = jnp.asarray(self.cutmix_alpha > 0)
        lam_mixup = jax.random.beta(keys[2], max(self.mixup_alpha, 1e-3), max(self.mixup_alpha, 1e-3))
        lam_cutmix = jax.random.beta(keys[3], max(self.cutmix_alpha, 1e-3), max(self.cutmix_alpha, 1e-3))
        # timm's rand_bbox: a box of side sqrt(1 - lam) x the image, centred uniformly, clipped
        cut = jnp.sqrt(1.0 - lam_cutmix)
        cut_h, cut_w = (height * cut).astype(jnp.int32), (width * cut).astype(jnp.int32)
        cy = jax.random.randint(keys[4], (), 0, height)
        cx = jax.random.randint(keys[5], (), 0, width)
        top, bottom = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
        left, right = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
        corrected = 1.0 - (bottom - top) * (right - left) / (height * width)
        lam = jnp.where(mixed, jnp.where(cutmix, corrected, lam_mixup), 1.0)
        return {"lam": lam.astype(jnp.float32), "cutmix": mixed & cutmix, "box": (top, bottom, left, right)}

    def __call__(self, images: jax.Array, labels: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(N, H, W, C) float images and integer labels -> mixed images and soft targets."""
        count, height, width = images.shape[:3]
        problem = pairing_problem(count)
        if problem:
            raise ValueError(problem)
        draw = self.params(key, height, width)
        lam, top, bottom, left, right = draw["lam"], *draw["box"]
        targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        flipped = images[::-1]
        rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
        box = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right) & draw["cutmix"]
        blended = lam * images + (1.0 - lam) * flipped
        images = jnp.where(draw["cutmix"], jnp.where(box[None, :, :, None], flipped, images), blended)
        return images.astype(flipped.dtype), lam * targets + (1.0 - lam) * targets[::-1]
