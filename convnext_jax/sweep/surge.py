"""Optimal LR per batch size, and the "surge" peak B* of the optimal LR for Adam-style optimizers.

Li et al. 2024 ("Surge Phenomenon in Optimal Learning Rate and Batch Size Scaling") derive, for
Adam, lr_opt(B) = 2 lr_max / (sqrt(B*/B) + sqrt(B/B*)): the optimal LR rises with the batch
size up to B* and falls after it. We fit lr_max and B* in log space by least squares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def bracketed(lrs: Sequence[float], scores: Sequence[float]) -> bool:
    """True when the best score is not at the smallest or largest LR swept (the optimum is inside;
    a diverged run, score -inf, at a larger LR brackets it too)."""
    best = float(np.asarray(lrs, float)[int(np.argmax(scores))])
    return min(lrs) < best < max(lrs)


def optimal_lr(lrs: Sequence[float], scores: Sequence[float]) -> float:
    """The LR with the best score, refined by a parabola in log(LR) through it and its neighbours
    (not refined next to a diverged run, whose score is -inf)."""
    order = np.argsort(lrs)
    x = np.log(np.asarray(lrs, float)[order])
    y = np.asarray(scores, float)[order]
    best = int(np.argmax(y))
    if best == 0 or best == len(x) - 1 or not np.all(np.isfinite(y[best - 1 : best + 2])):
        return float(math.exp(x[best]))
    (x0, x1, x2), (y0, y1, y2) = x[best - 1 : best + 2], y[best - 1 : best + 2]
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / denom
    vertex = -b / (2 * a) if a < 0 else x1
    return float(math.exp(min(max(vertex, x0), x2)))


def surge_curve(batch: np.ndarray, lr_max: float, peak: float) -> np.ndarray:
    return 2 * lr_max / (np.sqrt(peak / batch) + np.sqrt(batch / peak))


def fit_surge(batches: Sequence[float], lrs: Sequence[float]) -> dict[str, float | bool] | None:
    """{'peak_batch', 'lr_max', 'rmse_log', 'inside'} from (batch size, optimal LR) pairs, or None
    with fewer than 3 batch sizes. `inside` is False when the fitted peak lies outside the sampled
    batch sizes (the data only bound it: B* <= min or >= max)."""
    b = np.asarray(batches, float)
    y = np.log(np.asarray(lrs, float))
    if len(set(b.tolist())) < 3:
        return None
    candidates = np.exp(np.linspace(math.log(b.min() / 16), math.log(b.max() * 16), 2000))
    best = None
    for peak in candidates:
        log_shape = np.log(surge_curve(b, 1.0, peak))
        log_lr_max = float(np.mean(y - log_shape))
        error = float(np.mean((y - log_lr_max - log_shape) ** 2))
        if best is None or error < best[0]:
            best = (error, peak, math.exp(log_lr_max))
    error, peak, lr_max = best
    return {
        "peak_batch": float(peak),
        "lr_max": float(lr_max),
        "rmse_log": math.sqrt(error),
        "inside": bool(b.min() < peak < b.max()),
    }
