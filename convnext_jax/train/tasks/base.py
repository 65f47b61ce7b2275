"""The interface between the engine and a training objective."""

from __future__ import annotations

from typing import Any, Protocol

import jax


class Task(Protocol):
    """What the engine needs from an objective. All methods are pure and run inside jit.

    The engine's step calls `loss` once per micro-batch (under `shard_map`, on one device's
    share), averages over micro-batches and devices, and applies the optimizer; evaluation
    adds up `eval_sums` over the whole val split and turns the totals into metrics.
    """

    name: str
    best_metric: str  # the validation metric that selects the best checkpoint, e.g. "val_top1"
    best_mode: str  # "max" or "min"

    def loss(self, model: Any, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(mean loss, extra per-micro-batch mean metrics such as accuracy) in train mode."""
        ...

    def eval_sums(self, model: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Sums over the valid examples (batch["mask"] == 1), including "count"."""
        ...

    def eval_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Totals over the val split -> named metrics ("val_loss", ...; "val_count")."""
        ...
