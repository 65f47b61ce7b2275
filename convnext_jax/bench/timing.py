"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any


def time_calls(fn: Callable[[], object], *, steps: int, warmup: int) -> dict[str, float]:
    """Run `fn` (which must block until its work is done) warmup + steps times; per-call seconds."""
    return time_interleaved({"fn": fn}, rounds=1, steps=steps, warmup=warmup)["fn"]


@dataclasses.dataclass
class Prepared:
    """A compiled/warmed benchmark: `run()` does one blocking call, `row(timing)` the result row."""

    run: Callable[[], None]
    row: Callable[[dict[str, float]], dict[str, Any]]


def time_interleaved(
    runs: dict[str, Callable[[], None]], *, rounds: int, steps: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Time several benchmarks side by side: `rounds` times, each runs `steps` calls in turn.

    On a shared or thermally throttled machine the speed drifts over seconds; interleaving
    spreads the drift over every contender instead of penalising whichever ran last. Stats are
    over all rounds * steps calls.
    """
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            for _ in range(steps):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {
        name: {"median_s": statistics.median(t), "mean_s": statistics.fmean(t), "min_s": min(t)}
        for name, t in times.items()
    }


def markdown_table(rows: list[dict[str, object]], columns: list[str]) -> str:
    """Rows of dicts -> a GitHub markdown table over `columns`; a column no row has a value for
    (e.g. device memory on a CPU) is left out."""

    def fmt(value: object) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
        return str(value)

    columns = [c for c in columns if any(row.get(c) is not None for row in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


BUSY_SPREAD = 1.3  # median / min step time above this: the machine was busy, a ratio of medians is unreliable


def spread_warning(rows: list[dict[str, Any]]) -> str | None:
    """A warning when any contender's median step is more than BUSY_SPREAD x its fastest (other work
    on the machine slowed some calls): the ratio of minima is then the better comparison."""
    spread = {row["framework"]: row["median_s"] / row["min_s"] for row in rows if row.get("min_s")}
    busy = {name: value for name, value in spread.items() if value > BUSY_SPREAD}
    if not busy:
        return None
    return (
        "warning: the machine was busy: median/min step time "
        + ", ".join(f"{name} {value:.2f}x" for name, value in busy.items())
        + f" (above {BUSY_SPREAD}x); the ratio of medians is unreliable, compare the ratio of minima "
        "(the 'x (min)' column) and rerun on an idle machine"
    )


def add_speedup(rows: list[dict[str, Any]], key: str = "img_per_s") -> str:
    """Add each row's `speedup` over the reference row (the first PyTorch row, else the first row);
    returns the column's name, e.g. 'x vs torch eager'."""
    if not rows:
        return "speedup"
    reference = next((r for r in rows if str(r.get("framework", "")).startswith("torch")), rows[0])
    for row in rows:
        row["speedup"] = row[key] / reference[key] if reference.get(key) else None
    name = f"x vs {reference.get('framework', 'first')}"
    for row in rows:
        row[name] = row.pop("speedup")
        if reference.get("min_s") and row.get("min_s"):
            row["x (min)"] = reference["min_s"] / row["min_s"]  # the ratio of the fastest calls
    return name
