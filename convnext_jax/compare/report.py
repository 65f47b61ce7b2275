"""The comparison's report: WORKDIR/report.md, report.html (images embedded), curves.png (val
top-1 and train loss per epoch, mean line and min-max band over seeds, both frameworks),
throughput.png, parity.png (with --parity_steps) and results.json."""

from __future__ import annotations

import base64
import html
import json
import os
from typing import Any

import numpy as np

from convnext_jax.bench.timing import markdown_table
from convnext_jax.compare.stats import compare, mean_std

FRAMEWORKS = ("jax", "pytorch")
COLOURS = {"jax": "tab:blue", "pytorch": "tab:orange"}
METRICS = ("best_val_top1", "final_val_top1", "final_val_loss", "img_per_s")


def epoch_curves(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per epoch: val top-1 and the mean train loss of the epoch's steps."""
    epochs, top1, losses, window = [], [], [], []
    for record in records:
        if "train_loss" in record:
            window.append(record["train_loss"])
        if "val_top1" in record:
            epochs.append(float(record["epoch"]))
            top1.append(record["val_top1"])
            losses.append(float(np.mean(window)) if window else float("nan"))
            window = []
    return {"epoch": epochs, "val_top1": top1, "train_loss": losses}


def _band(ax: Any, runs: list[dict[str, list[float]]], key: str, framework: str) -> None:
    length = min(len(r[key]) for r in runs)
    if not length:
        return
    values = np.array([r[key][:length] for r in runs])
    x = runs[0]["epoch"][:length]
    ax.plot(x, values.mean(0), color=COLOURS[framework], label=f"{framework} (mean of {len(runs)})", marker="o")
    if len(runs) > 1:
        ax.fill_between(x, values.min(0), values.max(0), color=COLOURS[framework], alpha=0.2)


def _plots(workdir: str, runs: dict[str, list[dict[str, Any]]], parity: dict[str, Any] | None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for framework in FRAMEWORKS:
        curves = [epoch_curves(run["records"]) for run in runs[framework]]
        if curves:
            _band(axes[0], curves, "val_top1", framework)
            _band(axes[1], curves, "train_loss", framework)
    for ax, label in zip(axes, ("val top-1", "train loss (epoch mean)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "curves.png"), dpi=110)
    plt.close(fig)
    written.append("curves.png")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, framework in enumerate(FRAMEWORKS):
        speeds = [run["summary"]["img_per_s"] for run in runs[framework] if run["summary"].get("img_per_s")]
        if speeds:
            ax.bar(i, np.mean(speeds), color=COLOURS[framework])
            ax.errorbar(
                i, np.mean(speeds), yerr=[[np.mean(speeds) - min(speeds)], [max(speeds) - np.mean(speeds)]], color="k"
            )
    ax.set_xticks(range(len(FRAMEWORKS)), FRAMEWORKS)
    ax.set_ylabel("train img/s (mean, min-max over seeds)")
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "throughput.png"), dpi=110)
    plt.close(fig)
    written.append("throughput.png")
    if parity:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for framework in FRAMEWORKS:
            ax.plot(range(1, len(parity[framework]) + 1), parity[framework], label=framework, color=COLOURS[framework])
        ax.set_xlabel("step")
        ax.set_ylabel("train loss")
        ax.set_title(f"max relative difference {parity['max_relative_difference']:.2e}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(workdir, "parity.png"), dpi=110)
        plt.close(fig)
        written.append("parity.png")
    return written


def headline(table: dict[str, dict[str, Any]], seeds: int) -> str:
    top1, speed = table["best_val_top1"], table["img_per_s"]
    if top1["differs"] is None:
        accuracy = f"best val top-1 JAX {top1['jax_mean']:.4f} vs PyTorch {top1['pytorch_mean']:.4f} ({seeds} seed: no seed statistics; use --seeds 0,1,2)"
    elif top1["differs"]:
        low, high = top1["ci95"]
        accuracy = f"**the accuracies differ beyond seed noise**: best val top-1 JAX - PyTorch = {top1['difference']:+.4f} (95% CI {low:+.4f} .. {high:+.4f}, {seeds} seeds)"
    else:
        low, high = top1["ci95"]
        accuracy = f"the accuracies agree within seed noise: best val top-1 JAX - PyTorch = {top1['difference']:+.4f} (95% CI {low:+.4f} .. {high:+.4f}, {seeds} seeds)"
    ratio = speed["jax_mean"] / speed["pytorch_mean"] if speed["pytorch_mean"] else float("nan")
    return f"{accuracy}; JAX trains at {ratio:.2f}x PyTorch's speed ({speed['jax_mean']:.0f} vs {speed['pytorch_mean']:.0f} img/s)."


def write_report(
    workdir: str, runs: dict[str, list[dict[str, Any]]], meta: dict[str, Any], parity: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write the report files; returns the statistics."""
    table = {}
    rows = []
    for metric in METRICS:
        values = {f: [run["summary"].get(metric) for run in runs[f]] for f in FRAMEWORKS}
        values = {f: [v for v in vs if v is not None] for f, vs in values.items()}
        if not values["jax"] or not values["pytorch"]:
            continue
        table[metric] = compare(values["jax"], values["pytorch"])
        s = table[metric]
        digits = 1 if metric == "img_per_s" else 4
        rows.append(
            {
                "metric": metric,
                "jax (mean ± std)": mean_std(values["jax"], digits),
                "pytorch (mean ± std)": mean_std(values["pytorch"], digits),
                "jax - pytorch": f"{s['difference']:+.{digits}f}",
                "95% CI": "-" if s["ci95"] is None else f"{s['ci95'][0]:+.{digits}f} .. {s['ci95'][1]:+.{digits}f}",
                "welch t": "-" if s["welch_t"] is None else f"{s['welch_t']:+.2f}",
            }
        )
    seeds = len(runs["jax"])
    line = headline(table, seeds) if "best_val_top1" in table and "img_per_s" in table else "incomplete comparison"
    memory = {f: [run["summary"].get("peak_memory_bytes") for run in runs[f]] for f in FRAMEWORKS}
    per_seed = [
        {
            "framework": f,
            "seed": run["seed"],
            "best_val_top1": f"{run['summary']['best_val_top1']:.4f}",
            "final_val_loss": f"{run['summary']['final_val_loss']:.4f}",
            "img/s": f"{run['summary']['img_per_s']:.1f}" if run["summary"].get("img_per_s") else "-",
            "peak MiB": f"{run['summary']['peak_memory_bytes'] / 2**20:.0f}"
            if run["summary"].get("peak_memory_bytes")
            else "-",
        }
        for f in FRAMEWORKS
        for run in runs[f]
    ]
    images = _plots(workdir, runs, parity)
    setup_lines = [f"- {k}: {v}" for k, v in meta.items()]
    markdown = [
        f"# JAX vs PyTorch: {meta.get('config', '')}",
        "",
        line,
        "",
        "## Over seeds",
        "",
        markdown_table(rows, list(rows[0])) if rows else "-",
        "",
        "## Per seed",
        "",
        markdown_table(per_seed, list(per_seed[0])) if per_seed else "-",
        "",
        "## Setup",
        "",
        *setup_lines,
        "",
    ]
    if not any(v for vs in memory.values() for v in vs):
        markdown += ["Peak device memory: not reported on this backend (CPU).", ""]
    if parity:
        markdown += [
            "## Step-for-step parity",
            "",
            f"{len(parity['jax'])} steps from the same init and batches without stochastic parts: max relative difference of the train loss {parity['max_relative_difference']:.2e}.",
            "",
        ]
    markdown += [f"![{name}]({name})" for name in images]
    text = "\n".join(markdown) + "\n"
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(workdir, "report.html"), "w") as f:
        f.write(_html(text, workdir, images))
    result = {"headline": line, "statistics": table, "meta": meta, "parity": parity}
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(result, f, indent=2, default=str)
    return result


def _html(markdown: str, workdir: str, images: list[str]) -> str:
    """The markdown as a standalone page: headings, tables and paragraphs; images embedded."""
    parts, table = [], []

    def flush_table() -> None:
        if table:
            cells = [[c.strip() for c in row.strip("|").split("|")] for row in table if not set(row) <= set("|-: ")]
            head, *body = cells
            parts.append(
                "<table><tr>"
                + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
                + "</table>"
            )
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("## "):
            parts.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            parts.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("![") and line.endswith(")"):
            name = line[line.index("(") + 1 : -1]
            with open(os.path.join(workdir, name), "rb") as f:
                data = base64.b64encode(f.read()).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(name)}'></figure>")
        elif line.strip():
            parts.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    flush_table()
    style = "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>JAX vs PyTorch</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
