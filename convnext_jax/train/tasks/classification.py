"""Image classification: softmax cross-entropy with label smoothing (or the soft targets of
mixup/cutmix), or timm's binary cross-entropy (`--bce-loss`); evaluation reports the softmax
cross-entropy loss, top-1 and top-5."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from convnext_jax.data.from_config import normalisation
from convnext_jax.data.mixup import MixupCutmix, pairing_problem
from convnext_jax.data.on_device import InputStage
from convnext_jax.models.config import ConvNeXtConfig
from convnext_jax.models.registry import build_model


def soft_targets(labels: jax.Array, num_classes: int, label_smoothing: float) -> jax.Array:
    """Integer labels -> smoothed one-hot; soft labels (mixup/cutmix) pass through."""
    if labels.ndim == 2:
        return labels.astype(jnp.float32)
    return optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)


def binary_cross_entropy(
    logits: jax.Array, targets: jax.Array, *, target_threshold: float = 0.0, sum_classes: bool = False
) -> jax.Array:
    """timm's BinaryCrossEntropy on (smoothed / mixed) soft targets: with `target_threshold` > 0 the
    targets become 1 where above it and 0 elsewhere; the mean over examples and classes, or with
    `sum_classes` the sum over classes averaged over examples."""
    if target_threshold > 0:
        targets = (targets > target_threshold).astype(targets.dtype)
    losses = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets)
    return losses.sum(-1).mean() if sum_classes else losses.mean()


LOSSES = ("ce", "bce")
TOP_K = 5  # val_top5: is the label among the 5 highest logits (reported with more than 5 classes)
CONFUSION_MAX_CLASSES = 100  # per-class accuracy and the confusion matrix up to this many classes


@dataclasses.dataclass(frozen=True)
class Classification:
    num_classes: int
    label_smoothing: float = 0.0
    loss_kind: str = "ce"  # ce: softmax cross-entropy; bce: binary cross-entropy per class (timm --bce-loss)
    bce_target_threshold: float = 0.0
    bce_sum: bool = False
    eval_classes: tuple[int, ...] = ()  # evaluation: only these logits compete (ImageNet-A/-R's 200 classes)
    pairs_images: bool = False  # mixup/cutmix: each image is mixed with another of its device's micro-batch
    name: str = "classification"
    best_metric: str = "val_top1"
    best_mode: str = "max"
    pictures: int = 0

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, num_classes: int) -> Classification:
        aug = config.data.augment
        return cls(
            num_classes=num_classes,
            label_smoothing=config.label_smoothing,
            loss_kind=config.loss,
            bce_target_threshold=config.bce_target_thresh,
            bce_sum=config.bce_sum,
            pairs_images=aug.mixup_alpha > 0 or aug.cutmix_alpha > 0,
        )

    def with_eval_classes(self, eval_classes: tuple[int, ...]) -> Classification:
        """The same task scored over `eval_classes` only (ImageNet-A/-R: their 200 classes)."""
        return dataclasses.replace(self, eval_classes=tuple(eval_classes))

    def build_model(self, config: ml_collections.ConfigDict, architecture: ConvNeXtConfig) -> Any:
        return build_model(architecture, config.seed)

    def weight_decay_mask(self, model: Any, params: Any) -> None:
        return None  # the default: kernels only

    def input_stage(self, config: ml_collections.ConfigDict) -> InputStage:
        """Normalise, mixup/cutmix (soft targets, smoothed), random erasing."""
        aug, mixup = config.data.augment, None
        if self.pairs_images:
            mixup = MixupCutmix(
                self.num_classes,
                aug.mixup_alpha,
                aug.cutmix_alpha,
                aug.mixup_prob,
                aug.mixup_switch_prob,
                config.label_smoothing,
            )
        return InputStage(**normalisation(config), re_prob=aug.re_prob, mixup=mixup)

    @property
    def micro_batch_multiple(self) -> int:
        return 2 if self.pairs_images else 1

    def micro_batch_problem(self, per_device: int) -> str | None:
        return pairing_problem(per_device, "the micro-batch per device") if self.pairs_images else None

    def describe_model(self, name: str) -> str:
        return name

    def loss(self, model: Any, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        targets = soft_targets(batch["label"], self.num_classes, self.label_smoothing)
        logits = model(batch["image"], train=True, rng=rng)
        if self.loss_kind == "bce":
            loss = binary_cross_entropy(
                logits, targets, target_threshold=self.bce_target_threshold, sum_classes=self.bce_sum
            )
        else:
            loss = optax.softmax_cross_entropy(logits, targets).mean()
        accuracy = jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(targets, -1))
        return loss, {"accuracy": accuracy}

    def eval_sums(self, model: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Sums over the batch's valid examples. With `eval_classes` the other logits are left out;
        a `label_set` (multi-hot, ImageNet ReaL) makes a prediction right when it is in the set, and
        examples with an empty set do not count."""
        logits = model(batch["image"]).astype(jnp.float32)
        if self.eval_classes:
            allowed = jnp.zeros(logits.shape[-1], bool).at[jnp.asarray(self.eval_classes)].set(True)
            logits = jnp.where(allowed, logits, -1e9)
        labels = batch["label"]
        mask = batch["mask"].astype(jnp.float32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        k = min(TOP_K, logits.shape[-1])
        top_k = jax.lax.top_k(logits, k)[1]
        predictions = jnp.argmax(logits, -1)
        if "label_set" in batch:
            label_set = batch["label_set"].astype(bool)
            mask = mask * label_set.any(-1)
            top1 = jnp.take_along_axis(label_set, predictions[:, None], -1)[:, 0]
            top5 = jnp.take_along_axis(label_set, top_k, -1).any(-1)
        else:
            top1 = predictions == labels
            top5 = jnp.any(top_k == labels[:, None], axis=-1)
        sums = {
            "loss": jnp.sum(loss * mask),
            "top1": jnp.sum(top1 * mask),
            "top5": jnp.sum(top5 * mask),
            "count": jnp.sum(mask),
        }
        if self.num_classes <= CONFUSION_MAX_CLASSES:  # [true, predicted] counts
            truth = jax.nn.one_hot(labels, self.num_classes) * mask[:, None]
            sums["confusion"] = truth.T @ jax.nn.one_hot(predictions, self.num_classes)
        return sums

    def eval_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
        """The scalar metrics of the summed batches (`confusion`, when there, is not one of them)."""
        count = max(float(sums["count"]), 1.0)
        metrics = {"val_loss": float(sums["loss"]) / count, "val_top1": float(sums["top1"]) / count}
        if self.num_classes > TOP_K:  # with 5 classes or fewer top-5 is always 1: not a measurement
            metrics["val_top5"] = float(sums["top5"]) / count
        return {**metrics, "val_count": int(sums["count"])}
