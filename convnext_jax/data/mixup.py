"""Mixup / CutMix on host batches with label-smoothed soft targets (timm `Mixup`, mode='batch')."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import grain
import numpy as np


def smooth_one_hot(labels: np.ndarray, num_classes: int, smoothing: float) -> np.ndarray:
    """(1 - smoothing) on the true class + smoothing / num_classes everywhere (timm/torch convention)."""
    off = smoothing / num_classes
    targets = np.full((len(labels), num_classes), off, np.float32)
    targets[np.arange(len(labels)), labels] = 1.0 - smoothing + off
    return targets


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box of area ~(1 - lam) of the image, centred uniformly and clipped: (top, bottom, left, right)."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    return (int(np.clip(cy - cut_h // 2, 0, height)), int(np.clip(cy + cut_h // 2, 0, height)),
            int(np.clip(cx - cut_w // 2, 0, width)), int(np.clip(cx + cut_w // 2, 0, width)))


@dataclasses.dataclass
class MixupCutmix(grain.transforms.RandomMap):
    """Batch-level mixup/cutmix: each batch is mixed with its reverse, labels become soft targets.

    With both alphas > 0, cutmix is chosen with probability `switch_prob`; the whole op applies
    with probability `prob` (otherwise only label smoothing). CutMix's lambda is corrected to
    the clipped box's area, as timm's `correct_lam=True`.
    """

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

    def params(self, rng: np.random.Generator) -> tuple[float, bool]:
        """(lambda, use cutmix) for one batch, drawn as timm's Mixup._params_per_batch."""
        lam, use_cutmix = 1.0, False
        if rng.random() < self.prob and (self.mixup_alpha > 0 or self.cutmix_alpha > 0):
            if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
                use_cutmix = rng.random() < self.switch_prob
            else:
                use_cutmix = self.cutmix_alpha > 0
            alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
            lam = float(rng.beta(alpha, alpha))
        return lam, use_cutmix

    def random_map(self, batch: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        images, labels = np.asarray(batch["image"]), np.asarray(batch["label"])
        if len(images) % 2:
            raise ValueError(f"mixup/cutmix needs an even batch size, got {len(images)}")
        targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        lam, use_cutmix = self.params(rng)
        if lam == 1.0:
            return {**batch, "label": targets}
        flipped = images[::-1]
        if use_cutmix:
            height, width = images.shape[1:3]
            top, bottom, left, right = cutmix_box(height, width, lam, rng)
            images = images.copy()
            images[:, top:bottom, left:right] = flipped[:, top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (height * width)
        else:
            mixed = images.astype(np.float32) * lam + flipped.astype(np.float32) * (1.0 - lam)
            if np.issubdtype(images.dtype, np.integer):  # uint8 pixels: rounded, as timm's FastCollateMixup
                mixed = np.rint(mixed)
            images = mixed.astype(images.dtype)
        return {**batch, "image": images, "label": targets * lam + targets[::-1] * (1.0 - lam)}
