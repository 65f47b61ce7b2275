"""Training curves of one or more runs as a PNG: validation metrics per epoch and the train loss
per step (WORKDIR/curves.png at the end of every run; the sweep report's best trials)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def plot_curves(runs: Sequence[tuple[str, list[dict[str, Any]]]], path: str, *, val_metric: str = "val_top1") -> bool:
    """Plot `runs` ((label, metrics.jsonl records) pairs) into `path`; False when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    drawn = 0
    for label, records in runs:
        evals = [r for r in records if val_metric in r]
        train = [r for r in records if "train_loss" in r]
        if not evals and not train:
            continue
        left.plot([r["epoch"] for r in evals], [r[val_metric] for r in evals], marker="o", label=label)
        if evals and f"{val_metric}_ema" in evals[0]:
            left.plot(
                [r["epoch"] for r in evals],
                [r[f"{val_metric}_ema"] for r in evals],
                linestyle="--",
                label=f"{label} (EMA)",
            )
        right.plot([r["step"] for r in train], [r["train_loss"] for r in train], label=label)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return False
    from matplotlib.ticker import MaxNLocator

    left.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    left.set_xlabel("epoch")
    left.set_ylabel(val_metric.replace("_", " "))
    right.set_xlabel("optimizer step")
    right.set_ylabel("train loss")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if drawn > 1 or ax is left:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
