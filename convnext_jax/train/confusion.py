"""Per-class accuracy and the confusion matrix of an evaluation (datasets up to 100 classes): a
PNG (row-normalised matrix beside per-class accuracy) and a CSV, written at the end of training
(WORKDIR/confusion.png, WORKDIR/per_class.csv) and by `python -m convnext_jax.validate --pictures`."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np


def per_class(confusion: np.ndarray, names: Sequence[str] | None = None) -> list[dict[str, object]]:
    """One row per class: its name, val images, correct predictions, accuracy and the class it is
    most often mistaken for."""
    names = list(names) if names is not None else [str(i) for i in range(len(confusion))]
    rows = []
    for index, counts in enumerate(confusion):
        total = int(counts.sum())
        wrong = counts.copy()
        wrong[index] = 0
        rows.append(
            {
                "class": names[index],
                "images": total,
                "correct": int(counts[index]),
                "accuracy": counts[index] / total if total else float("nan"),
                "most_confused_with": names[int(wrong.argmax())] if wrong.any() else "",
            }
        )
    return rows


def write_confusion(
    confusion: np.ndarray, directory: str, names: Sequence[str] | None = None, title: str = ""
) -> tuple[str, str]:
    """confusion.png and per_class.csv in `directory`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    rows = per_class(confusion, names)
    csv_path = os.path.join(directory, "per_class.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    classes = len(confusion)
    totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, totals, out=np.zeros(confusion.shape, float), where=totals > 0)
    size = min(4 + classes * 0.25, 30)
    fig, (matrix, bars) = plt.subplots(1, 2, figsize=(2 * size, size), gridspec_kw={"width_ratios": [1.25, 1]})
    shown = matrix.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(shown, ax=matrix, fraction=0.046, pad=0.04, label="share of the true class")
    labels = [str(r["class"]) for r in rows]
    ticks = np.arange(classes) if classes <= 40 else np.arange(0, classes, max(classes // 20, 1))
    matrix.set_xticks(ticks, [labels[i] for i in ticks], rotation=90, fontsize=8)
    matrix.set_yticks(ticks, [labels[i] for i in ticks], fontsize=8)
    matrix.set_xlabel("predicted")
    matrix.set_ylabel("true")
    if classes <= 20:
        for (i, j), count in np.ndenumerate(confusion):
            if count:
                matrix.text(
                    j,
                    i,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if normalised[i, j] > 0.5 else "black",
                )
    accuracy = [r["accuracy"] for r in rows]
    bars.barh(np.arange(classes), accuracy, color="tab:blue")
    bars.set_yticks(ticks, [labels[i] for i in ticks], fontsize=8)
    bars.invert_yaxis()
    bars.set_xlim(0, 1)
    bars.set_xlabel("per-class accuracy")
    bars.grid(axis="x", alpha=0.3)
    fig.suptitle(title or f"{int(np.trace(confusion))} / {int(confusion.sum())} correct")
    fig.tight_layout()
    png_path = os.path.join(directory, "confusion.png")
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path, csv_path
