"""A run too short for its recipe: the checks said at the start of a run, so that nobody reads a
warmup that never ended or an EMA that never moved as a result."""

from __future__ import annotations

from typing import Any

import ml_collections

from convnext_jax.text import plural


def ema_horizon(decay: float) -> float:
    """The number of steps an EMA with `decay` averages over: 1 / (1 - decay)."""
    return 1.0 / (1.0 - decay) if decay < 1.0 else float("inf")


def ema_is_meaningful(config: ml_collections.ConfigDict, total_steps: int) -> bool:
    """Whether the run's EMA weights (if any) average over no more steps than the run has."""
    return not config.ema_decay or ema_horizon(config.ema_decay) <= total_steps


def short_run_notes(
    config: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int, warmup_steps: int
) -> list[str]:
    """One line per way the run is too short for its recipe (empty when it is not)."""
    notes = []
    if warmup_steps >= total_steps:
        epochs = f" ({plural(config.optim.warmup_epochs, 'epoch')})" if not config.optim.warmup_steps else ""
        notes.append(
            f"warning: the LR warmup{epochs} of {warmup_steps} steps is as long as the whole run "
            f"({plural(config.num_epochs, 'epoch')}, {plural(total_steps, 'step')}): the LR never reaches its peak and never "
            f"decays. Lower optim.warmup_epochs (e.g. {config.num_epochs // 10})."
        )
    if not ema_is_meaningful(config, total_steps):
        suggestion = _decay_for(total_steps)
        notes.append(
            f"warning: ema_decay {config.ema_decay} averages over ~{ema_horizon(config.ema_decay):.0f} steps, "
            f"more than this run's {total_steps}: the EMA weights stay near their initialisation and the "
            f"*_ema metrics are not meaningful (summary.json says ema_meaningful: false). Use ema_decay "
            f"{suggestion} or less for a run this long, or 0 for no EMA."
        )
        if config.get("select_on", "") in ("val_top1_ema", "best"):
            notes.append(f"warning: select_on={config.select_on!r} picks checkpoints by those EMA metrics.")
    return notes


def _decay_for(total_steps: int) -> str:
    """A decay whose horizon is a tenth of the run, rounded down to a readable number of nines."""
    decay = 1.0 - 10.0 / max(total_steps, 10)
    for nines in (0.9999, 0.9998, 0.9995, 0.999, 0.998, 0.995, 0.99, 0.98, 0.95, 0.9):
        if nines <= decay:
            return f"{nines:g}"
    return "0.9"


def summary_fields(config: ml_collections.ConfigDict, total_steps: int) -> dict[str, Any]:
    """What summary.json says about the EMA's meaning (only when the run keeps one)."""
    if not config.ema_decay:
        return {}
    return {
        "ema_horizon_steps": round(ema_horizon(config.ema_decay)),
        "ema_meaningful": ema_is_meaningful(config, total_steps),
    }
