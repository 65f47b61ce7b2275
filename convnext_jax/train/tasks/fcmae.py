"""Masked-image pre-training (FCMAE): the loss is the model's (masked patches), evaluation reports
the masked-patch loss over the val split with a fixed mask per image, and a picture shows what
the model reconstructs."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from convnext_jax.data.from_config import normalisation
from convnext_jax.data.on_device import InputStage
from convnext_jax.models.config import ConvNeXtConfig
from convnext_jax.models.fcmae import patchify, random_mask, unpatchify
from convnext_jax.models.params import fcmae_weight_decay_mask
from convnext_jax.models.registry import build_fcmae
from convnext_jax.train.config import fcmae_config

EVAL_MASK_SEED = 17  # evaluation masks are the same every epoch, so val losses compare


@dataclasses.dataclass(frozen=True)
class MaskedImageModeling:
    mean: tuple[float, ...] | None = None  # the input normalisation, to show pictures in colour
    std: tuple[float, ...] | None = None
    pictures: int = 0  # val images drawn at every evaluation (original | masked | reconstruction | pasted)
    name: str = "fcmae"
    best_metric: str = "val_loss"
    best_mode: str = "min"
    micro_batch_multiple: int = 1

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, num_classes: int) -> MaskedImageModeling:
        return cls(**normalisation(config), pictures=config.fcmae.pictures)

    def build_model(self, config: ml_collections.ConfigDict, architecture: ConvNeXtConfig) -> Any:
        """The pre-training model (encoder + pixel decoder) around the architecture's encoder."""
        return build_fcmae(fcmae_config(config, architecture), config.seed)

    def weight_decay_mask(self, model: Any, params: Any) -> Any:
        return fcmae_weight_decay_mask(model.cfg, params)  # the official pre-training's rule

    def input_stage(self, config: ml_collections.ConfigDict) -> InputStage:
        return InputStage(**normalisation(config), re_prob=config.data.augment.re_prob)

    def micro_batch_problem(self, per_device: int) -> str | None:
        return None

    def describe_model(self, name: str) -> str:
        return f"FCMAE pre-training of {name}"

    def loss(self, model: Any, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        loss, _, _ = model(batch["image"], rng=rng, train=True)
        return loss, {}

    def _eval_mask(self, model: Any, images: jax.Array) -> jax.Array:
        n, height, width, _ = images.shape
        return random_mask(jax.random.key(EVAL_MASK_SEED), n, model.num_patches(height, width), model.cfg.mask_ratio)

    def eval_sums(self, model: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        images, valid = batch["image"], batch["mask"].astype(jnp.float32)
        _, pred, mask = model(images, mask=self._eval_mask(model, images))
        weights = mask * valid[:, None]
        return {
            "loss": jnp.sum(model.patch_errors(images, pred) * weights),
            "patches": jnp.sum(weights),
            "count": jnp.sum(valid),
        }

    def eval_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {"val_loss": float(sums["loss"]) / max(float(sums["patches"]), 1.0), "val_count": int(sums["count"])}

    def picture_columns(self, model: Any, images: jax.Array) -> tuple[jax.Array, ...]:
        """(original, masked input, reconstruction, reconstruction pasted into the visible patches),
        each like `images` (jit-able; `picture_grid` turns them into one image)."""
        n, height, width, channels = images.shape
        p = model.cfg.patch_size
        _, pred, mask = model(images, mask=self._eval_mask(model, images))
        if model.cfg.norm_pix_loss:  # predictions are per-patch normalised: undo with the true statistics
            target = patchify(images.astype(jnp.float32), p)
            mean = jnp.mean(target, axis=-1, keepdims=True)
            std = jnp.sqrt(jnp.var(target, axis=-1, keepdims=True, ddof=1) + 1e-6)
            pred = pred * std + mean
        recon = unpatchify(pred, p, height, width)
        removed = unpatchify(jnp.broadcast_to(mask[..., None], pred.shape), p, height, width)
        original = images.astype(jnp.float32)
        masked = original * (1.0 - removed) + removed * jnp.mean(original)
        pasted = original * (1.0 - removed) + recon * removed
        return original, masked, recon, pasted

    PICTURE_LABELS = (
        ("original", "original"),
        ("masked", "masked"),
        ("reconstruction", "recon."),
        ("pasted", "pasted"),
    )  # (label, short label for narrow columns), as `picture_columns`

    def picture_grid(self, columns: tuple[np.ndarray, ...]) -> np.ndarray:
        """The columns side by side, one row per image, under a header naming each column
        (original | masked | reconstruction | pasted), as uint8 pixels (H x W x 3)."""
        pixels = [self._to_pixels(np.asarray(c)) for c in columns]
        grid = np.concatenate([np.concatenate([c[i] for c in pixels], axis=1) for i in range(len(pixels[0]))], axis=0)
        return np.concatenate([self._header([c.shape[2] for c in pixels]), grid], axis=0)

    def _header(self, widths: list[int]) -> np.ndarray:
        """A white band with each column's label in black (the short one when the long one does not fit)."""
        from PIL import Image, ImageDraw, ImageFont

        font = ImageFont.load_default()
        height = 14
        band = Image.new("RGB", (sum(widths), height), (255, 255, 255))
        draw = ImageDraw.Draw(band)
        left = 0
        for width, (label, short) in zip(widths, self.PICTURE_LABELS):
            text = label if draw.textlength(label, font=font) <= width - 2 else short
            draw.text(
                (left + max(1, (width - draw.textlength(text, font=font)) / 2), 1), text, fill=(0, 0, 0), font=font
            )
            left += width
        return np.asarray(band)

    def _to_pixels(self, images: np.ndarray) -> np.ndarray:
        if self.mean is not None and self.std is not None:
            images = images * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)
        return (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)
