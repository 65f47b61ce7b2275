"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def time_calls(fn: Callable[[], object], *, steps: int, warmup: int) -> dict[str, float]:
    """Run `fn` (which must block until its work is done) warmup + steps times; per-call seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times), "min_s": min(times)}


def markdown_table(rows: list[dict[str, object]], columns: list[str]) -> str:
    """Rows of dicts -> a GitHub markdown table over `columns`."""

    def fmt(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
