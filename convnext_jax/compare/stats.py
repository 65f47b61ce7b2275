"""Seed statistics of a comparison: mean ± std per framework, the difference with a 95%
confidence interval (Welch-Satterthwaite) and Welch's t."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as scipy_stats


def compare(jax_values: list[float], torch_values: list[float]) -> dict[str, Any]:
    """Statistics of one metric over seeds; `differs` is True when the 95% interval of the
    difference (jax - pytorch) excludes 0, None with fewer than two seeds a side."""
    a, b = np.asarray(jax_values, float), np.asarray(torch_values, float)
    out: dict[str, Any] = {
        "jax_mean": float(a.mean()),
        "pytorch_mean": float(b.mean()),
        "jax_std": float(a.std(ddof=1)) if len(a) > 1 else None,
        "pytorch_std": float(b.std(ddof=1)) if len(b) > 1 else None,
        "difference": float(a.mean() - b.mean()),
        "ci95": None,
        "welch_t": None,
        "differs": None,
    }
    if len(a) < 2 or len(b) < 2:
        return out
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        out.update(ci95=(out["difference"], out["difference"]), differs=out["difference"] != 0)
        return out
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(scipy_stats.t.ppf(0.975, df)) * se
    low, high = out["difference"] - half, out["difference"] + half
    out.update(ci95=(low, high), welch_t=out["difference"] / se, differs=not low <= 0.0 <= high)
    return out


def mean_std(values: list[float], digits: int = 4) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"
