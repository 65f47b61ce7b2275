"""The interface between the engine and a training objective."""

from __future__ import annotations

from typing import Any, Protocol

import jax
import ml_collections

from convnext_jax.data.on_device import InputStage
from convnext_jax.models.config import ConvNeXtConfig


class Task(Protocol):
    """Everything that differs between objectives; setup and engine only call it.

    Built from the config (`from_config`), a task builds its model around the run's architecture,
    says which parameters take weight decay, what the step does to the images on the device, how
    big a micro-batch must be, and how to name the model. In the step (pure, inside jit) the engine
    calls `loss` once per micro-batch (under `shard_map`, on one device's share), averages over
    micro-batches and devices, and applies the optimizer; evaluation adds up `eval_sums` over the
    whole val split and turns the totals into metrics (`eval_metrics`); `best_metric`/`best_mode`
    say what "best" means. A task with `pictures` > 0 draws that many val images each epoch
    (`picture_columns` in jit, `picture_grid` on the host).
    """

    name: str
    best_metric: str  # the validation metric that selects the best checkpoint, e.g. "val_top1"
    best_mode: str  # "max" or "min"
    pictures: int  # val images drawn at every evaluation (0: none)

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, num_classes: int) -> Task:
        """The task a training config describes (`num_classes`: the data's, or model.num_classes)."""
        ...

    def build_model(self, config: ml_collections.ConfigDict, architecture: ConvNeXtConfig) -> Any:
        """The freshly initialised model (seeded by config.seed) around `architecture` (the run's
        ConvNeXt, its classifier sized for the data)."""
        ...

    def weight_decay_mask(self, model: Any, params: Any) -> Any:
        """Which parameters take weight decay (a pytree of bools like `params`), or None for the
        default rule (kernels only: no norms, biases, layer scale, GRN)."""
        ...

    def input_stage(self, config: ml_collections.ConfigDict) -> InputStage:
        """What the step does to the uint8 images on the device (normalise; augmentations)."""
        ...

    def micro_batch_problem(self, per_device: int) -> str | None:
        """Why a micro-batch of `per_device` images per device cannot work for this task, or None;
        `micro_batch_multiple` is the per-device multiple that always works."""
        ...

    @property
    def micro_batch_multiple(self) -> int: ...

    def describe_model(self, name: str) -> str:
        """How the run's first lines name the model being trained."""
        ...

    def loss(self, model: Any, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(mean loss, extra per-micro-batch mean metrics such as accuracy) in train mode."""
        ...

    def eval_sums(self, model: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Sums over the valid examples (batch["mask"] == 1), including "count"."""
        ...

    def eval_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Totals over the val split -> named metrics ("val_loss", ...; "val_count")."""
        ...
