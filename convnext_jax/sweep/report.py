"""Study reports: one row per point (mean ± std over its complete seeds, how many seeds that is,
and flags for points that rest on fewer seeds, were pruned, failed, diverged, or whose optimum
lies at the edge of a swept range), a headline that says how much to trust the best point, and
PNG plots: the objective against each swept key and against the LR per batch size, the optimal LR vs
batch size with the estimated surge peak B*, accuracy vs params / GMACs / resolution, and the
training curves of the best trials. Written as report.md, report.html (rendered, not markdown)
and points.json."""

from __future__ import annotations

import html
import json
import math
import os
import re
import warnings
from collections import defaultdict
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from convnext_jax.run_files import METRICS_FILE
from convnext_jax.sweep.spec import SweepSpec, split_config
from convnext_jax.sweep.study import load_sweep, open_storage
from convnext_jax.sweep.surge import bracketed, fit_surge, optimal_lr, surge_curve
from convnext_jax.train.curves import plot_curves
from convnext_jax.train.metrics import read_metrics

ARCH_KEYS = (
    "model.name",
    "data.image_size",
    "model.depth_multiplier",
    "model.width_multiplier",
    "model.depths",
    "model.dims",
)
METRICS = ("value", "best_val_top1", "final_val_loss", "epochs_to_target", "img_per_s")
Stat = tuple[float, float, int]  # mean, std, number of complete seeds


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per finished trial of a point (complete, pruned or failed). A failed trial that was
    retried (its worker died) is replaced by its retry."""
    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # public, marked experimental
        retried = {n for t in trials for n in optuna.storages.RetryFailedTrialCallback.retry_history(t)}
    rows = []
    for t in trials:
        if "seed" not in t.user_attrs or t.state in (TrialState.WAITING, TrialState.RUNNING) or t.number in retried:
            continue
        rows.append(
            {**t.user_attrs, "number": t.number, "state": t.state.name, "params": dict(t.params), "value": t.value}
        )
    return rows


def _stat(values: list[float | None], *, keep_inf: bool = False) -> Stat:
    """(mean, std, count) of the values; with `keep_inf`, an infinite value (a diverged run's loss)
    makes the mean infinite instead of being left out."""
    values = [v for v in values if v is not None and (math.isfinite(v) or (keep_inf and math.isinf(v)))]
    if not values:
        return float("nan"), float("nan"), 0
    if not all(math.isfinite(v) for v in values):
        return float(np.mean(values)), float("nan"), len(values)
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values)


def aggregate(rows: list[dict[str, Any]], spec: SweepSpec) -> list[dict[str, Any]]:
    """Per point: params, counts by state, mean/std/count over the complete seeds of each metric,
    and flags; sorted best first (points without a complete seed last)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[json.dumps(row["params"], sort_keys=True)].append(row)
    points = []
    for key, members in groups.items():
        done = [r for r in members if r["state"] == "COMPLETE"]
        point = {
            "params": json.loads(key),
            "seeds": spec.seeds,
            "complete": len(done),
            "pruned": sum(r["state"] == "PRUNED" for r in members),
            "failed": sum(r["state"] == "FAIL" for r in members),
            "diverged": sum("diverged" in r for r in done),
            "trials": [r["number"] for r in members],
        }
        for metric in METRICS:
            point[metric] = _stat([r.get(metric) for r in done], keep_inf=metric == "value")
        for metric in ("num_params", "gmacs_per_image"):
            values = [r[metric] for r in members if r.get(metric) is not None]
            point[metric] = values[0] if values else None
        points.append(point)
    sign = -1.0 if spec.direction == "maximize" else 1.0
    points.sort(key=lambda p: (not _scored(p), sign * p["value"][0] if _scored(p) else 0.0))
    _flag(points, spec)
    return points


def _scored(point: dict[str, Any]) -> bool:
    """The point has an objective value (a complete seed)."""
    return point["value"][2] > 0


def _better(spec: SweepSpec, a: float, b: float) -> bool:
    return a > b if spec.direction == "maximize" else a < b


def _flag(points: list[dict[str, Any]], spec: SweepSpec) -> None:
    """p["flags"]: short warnings. A point rests on fewer seeds than the study asked for, lost
    trials, or is the best of its slice at the lowest/highest value of a swept numeric key (the
    optimum may lie outside the range)."""
    for p in points:
        flags = []
        if p["complete"] < p["seeds"]:
            flags.append(f"{p['complete']}/{p['seeds']} seeds" if p["complete"] else "no complete seed")
        flags += [f"{p[k]} {k}" for k in ("pruned", "failed", "diverged") if p[k]]
        p["flags"], p["edges"] = flags, []
    for dim in spec.dims:
        values = sorted({p["params"][dim.key] for p in points if _numeric(p["params"].get(dim.key))})
        if len(values) < 3:
            continue
        slices: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for p in points:
            if _scored(p) and dim.key in p["params"]:
                rest = {k: v for k, v in p["params"].items() if k != dim.key}
                slices[json.dumps(rest, sort_keys=True)].append(p)
        for members in slices.values():
            best = members[0]
            for p in members[1:]:
                if _better(spec, p["value"][0], best["value"][0]):
                    best = p
            position = best["params"][dim.key]
            if position in (values[0], values[-1]):
                side = "lowest" if position == values[0] else "highest"
                best["edges"].append(dim.key)
                best["flags"].append(f"best at the {side} {dim.key}")


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fmt(stat: Stat, digits: int = 4) -> str:
    """'mean ± std (n seeds)'; one seed has no spread to show."""
    mean, std, n = stat
    if not n:
        return "-"
    if math.isinf(mean):
        return f"{mean} ({n} seed{'s' if n > 1 else ''})"
    if n == 1:
        return f"{mean:.{digits}f} (1 seed)"
    return f"{mean:.{digits}f} ± {std:.{digits}f} ({n} seeds)"


def headline(points: list[dict[str, Any]], spec: SweepSpec) -> tuple[str, list[str]]:
    """The best point and what limits trust in it. The best point is chosen among points whose
    every seed completed; a partial point that scored higher is named as a caveat."""
    scored = [p for p in points if _scored(p)]
    if not scored:
        return "No point has a complete trial yet.", []
    full = [p for p in scored if p["complete"] == p["seeds"]]
    best = full[0] if full else scored[0]
    params = ", ".join(f"{k}={v}" for k, v in best["params"].items()) or "(base config)"
    text = f"Best point: {params} — {spec.objective} {fmt(best['value'])}" + (
        f"; all {best['seeds']} seeds complete" if best["complete"] == best["seeds"] and best["seeds"] > 1 else ""
    )
    warnings = []
    if best["complete"] < best["seeds"]:
        warnings.append(
            f"it rests on {best['complete']} of {best['seeds']} seeds ({best['pruned']} pruned, "
            f"{best['failed']} failed): the mean is not a reliable estimate"
        )
    elif best["seeds"] == 1:
        warnings.append(
            "one seed per point: differences smaller than the run-to-run noise cannot be told apart "
            "(set sweep.seeds >= 2)"
        )
    for key in best["edges"]:
        values = sorted({p["params"][key] for p in points if key in p["params"]})
        side = "lowest" if best["params"][key] == values[0] else "highest"
        warnings.append(
            f"it is at the {side} {key} swept ({best['params'][key]}): the optimum may lie beyond; "
            f"widen the range of {key}"
        )
    if best is not scored[0]:
        partial = scored[0]
        warnings.append(
            f"{', '.join(f'{k}={v}' for k, v in partial['params'].items())} scored higher "
            f"({fmt(partial['value'])}) but only {partial['complete']} of {partial['seeds']} seeds "
            "completed"
        )
    return text, warnings


def _table(points: list[dict[str, Any]], spec: SweepSpec) -> tuple[list[str], list[list[str]]]:
    keys = [d.key for d in spec.dims]
    header = keys + [
        f"{spec.objective}",
        "seeds done",
        "best val top-1",
        "final val loss",
        "epochs to target",
        "params (M)",
        "GMACs",
        "img/s",
        "flags",
    ]
    body = []
    for p in points:
        body.append(
            [str(p["params"].get(k, "")) for k in keys]
            + [
                fmt(p["value"]),
                f"{p['complete']}/{p['seeds']}",
                fmt(p["best_val_top1"]),
                fmt(p["final_val_loss"]),
                fmt(p["epochs_to_target"], 1),
                f"{p['num_params'] / 1e6:.3f}" if p["num_params"] else "-",
                f"{p['gmacs_per_image']:.4g}" if p["gmacs_per_image"] else "-",
                fmt(p["img_per_s"], 0),
                "; ".join(p["flags"]) or "-",
            ]
        )
    return header, body


# ---------------------------------------------------------------------------------------------
# Plots


def _finish(plt, fig, axes, path: str, *, legend: bool = False) -> None:
    """Grid on every axis, optional legend on the first, tight layout, save as PNG, close."""
    for ax in axes:
        ax.grid(alpha=0.3)
    if legend:
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _is_log(spec: SweepSpec, key: str, values: list[float]) -> bool:
    kinds = {d.key: d.kind for d in spec.dims}
    if kinds.get(key) in ("loguniform", "logint", "loggrid"):
        return True
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and len(values) > 1 and max(positive) / min(positive) >= 30


def _series(ax, points: list[dict[str, Any]], x_key: str, stat_key: str, label: str | None) -> None:
    """One line: filled markers for points whose every seed completed, hollow for partial ones,
    a ring around a point that is the best of its slice at the edge of the `x_key` range."""
    points = sorted((p for p in points if math.isfinite(p[stat_key][0])), key=lambda p: p["params"][x_key])
    x = [p["params"][x_key] for p in points]
    mean = [p[stat_key][0] for p in points]
    line = ax.errorbar(x, mean, yerr=[p[stat_key][1] for p in points], capsize=3, label=label, marker="")
    colour = line[0].get_color()
    for p, xi, yi in zip(points, x, mean):
        full = p["complete"] == p["seeds"]
        ax.plot([xi], [yi], "o", color=colour, markerfacecolor=colour if full else "white")
        if x_key in p["edges"]:
            ax.plot([xi], [yi], "o", markersize=14, markerfacecolor="none", markeredgecolor="red")


def _legend_notes(ax, points: list[dict[str, Any]], x_key: str) -> None:
    """Legend entries for the marker styles, and an x at the top for points that diverged."""
    ax.plot([], [], "o", color="gray", markerfacecolor="white", label="partial (fewer complete seeds)")
    ax.plot([], [], "o", markersize=11, markerfacecolor="none", markeredgecolor="red", label="best at a range edge")
    diverged = [p["params"][x_key] for p in points if _scored(p) and math.isinf(p["value"][0])]
    if diverged:
        ax.plot(
            diverged,
            [ax.get_ylim()[1]] * len(diverged),
            "x",
            color="black",
            clip_on=False,
            label="diverged (objective inf)",
        )


def _plot_numeric(plt, points, spec, key, path) -> bool:
    """The objective against `key`, one line per combination of the other swept keys."""
    rows = [p for p in points if _scored(p) and _numeric(p["params"].get(key))]
    if len({p["params"][key] for p in rows}) < 2:
        return False
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in rows:
        lines[", ".join(f"{k.split('.')[-1]}={v}" for k, v in p["params"].items() if k != key)].append(p)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, members in sorted(lines.items()):
        _series(ax, members, key, "value", label or None)
    _legend_notes(ax, [p for p in points if _numeric(p["params"].get(key))], key)
    if _is_log(spec, key, [p["params"][key] for p in rows]):
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel(f"{spec.objective} (mean ± std over seeds)")
    _finish(plt, fig, [ax], path, legend=True)
    return True


def _lr_batch_plots(plt, points, out_dir, spec: SweepSpec) -> dict[str, Any]:
    """The objective vs LR per batch size, and the optimal LR per batch size with the surge fit."""
    by_batch: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for p in points:
        if "optim.lr" in p["params"] and "batch_size" in p["params"] and _scored(p):  # a diverged point: inf
            by_batch[int(p["params"]["batch_size"])].append(p)
    if not by_batch:
        return {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for batch in sorted(by_batch):
        _series(ax, by_batch[batch], "optim.lr", "value", f"batch {batch}")
    _legend_notes(ax, [p for rows in by_batch.values() for p in rows], "optim.lr")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"{spec.objective} (mean ± std)")
    _finish(plt, fig, [ax], os.path.join(out_dir, "objective_vs_lr_by_batch.png"), legend=True)
    plots = ["objective_vs_lr_by_batch.png"]
    sign = 1.0 if spec.direction == "maximize" else -1.0  # optimal_lr maximises its scores
    curves = {b: sorted((p["params"]["optim.lr"], sign * p["value"][0]) for p in rows) for b, rows in by_batch.items()}
    optimum = {
        b: optimal_lr([r[0] for r in rows], [r[1] for r in rows]) for b, rows in curves.items() if len(rows) >= 2
    }
    edge = sorted(
        b for b, rows in curves.items() if len(rows) >= 2 and not bracketed([r[0] for r in rows], [r[1] for r in rows])
    )
    result: dict[str, Any] = {
        "optimal_lr": {str(b): lr for b, lr in sorted(optimum.items())},
        "lr_at_edge": edge,
        "plots": plots,
    }
    inside = {b: lr for b, lr in optimum.items() if b not in edge}
    if len(inside) < 3 and optimum:
        result["surge_note"] = (
            f"B* not estimated: the optimal LR is bracketed by the swept LRs for only "
            f"{len(inside)} batch size(s) (at the edge of the LR range for {edge}); widen optim.lr"
        )
    if len(optimum) >= 2:
        batches = np.array(sorted(optimum), float)
        lrs = np.array([optimum[int(b)] for b in batches])
        fit = (
            fit_surge(np.array(sorted(inside), float), np.array([inside[b] for b in sorted(inside)]))
            if len(inside) >= 3
            else None
        )
        result["surge"] = fit
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(batches, lrs, "o", label=f"optimal LR (best mean {spec.objective})")
        if edge:
            ax.plot(
                edge,
                [optimum[b] for b in edge],
                "o",
                markersize=12,
                markerfacecolor="none",
                markeredgecolor="red",
                label="at the edge of the LR range",
            )
        if fit:
            grid = np.exp(np.linspace(math.log(batches.min()), math.log(batches.max()), 200))
            ax.plot(
                grid,
                surge_curve(grid, fit["lr_max"], fit["peak_batch"]),
                "-",
                label=f"surge fit, B* ≈ {fit['peak_batch']:.0f}" + ("" if fit["inside"] else " (outside range)"),
            )
            if fit["inside"]:
                ax.axvline(fit["peak_batch"], linestyle="--", color="gray")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("global batch size")
        ax.set_ylabel("optimal learning rate")
        _finish(plt, fig, [ax], os.path.join(out_dir, "optimal_lr_vs_batch.png"), legend=True)
        plots.append("optimal_lr_vs_batch.png")
    return result


def _cost_plot(plt, points, train_config, path) -> bool:
    """Accuracy vs parameters, GMACs and resolution, one marker per architecture point."""
    rows = [p for p in points if p["complete"] and p["num_params"] and any(k in ARCH_KEYS for k in p["params"])]
    if len(rows) < 2:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for p in rows:
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in p["params"].items())
        resolution = p["params"].get("data.image_size", train_config.data.image_size)
        face = None if p["complete"] == p["seeds"] else "white"
        for ax, x in zip(axes, (p["num_params"] / 1e6, p["gmacs_per_image"] or float("nan"), resolution)):
            ax.errorbar(
                [x],
                [p["best_val_top1"][0]],
                yerr=[p["best_val_top1"][1]],
                marker="o",
                capsize=3,
                label=label,
                markerfacecolor=face,
            )
    for ax, name in zip(axes, ("parameters (M)", "GMACs per image", "resolution (px)")):
        ax.set_xlabel(name)
        ax.set_ylabel("best val top-1 (mean ± std)")
    _finish(plt, fig, list(axes), path, legend=True)
    return True


def _curves_plot(rows, spec, workdir, path, top: int = 5) -> bool:
    """Val top-1 per epoch and train loss per step of the best `top` complete trials."""
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    done.sort(key=lambda r: -r["value"] if spec.direction == "maximize" else r["value"])
    runs = []
    for r in done[:top]:
        if os.path.exists(os.path.join(workdir, r["workdir"], METRICS_FILE)):
            label = f"#{r['number']} " + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in r["params"].items())
            runs.append((label, read_metrics(os.path.join(workdir, r["workdir"]))))
    return plot_curves(runs, path)


# ---------------------------------------------------------------------------------------------
# Documents: one list of blocks, rendered as markdown and as HTML


def _markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *content in blocks:
        if kind == "h1":
            out += [f"# {content[0]}", ""]
        elif kind == "h2":
            out += [f"## {content[0]}", ""]
        elif kind == "p":
            out += [content[0], ""]
        elif kind == "warnings":
            out += [f"- **Caution:** {w}" for w in content[0]] + [""]
        elif kind == "table":
            header, rows = content
            out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(row) + " |" for row in rows] + [""]
        elif kind == "img":
            out += [f"![{content[0]}]({content[0]})", ""]
    return "\n".join(out)


def _inline_html(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _html(title: str, blocks: list[tuple]) -> str:
    parts = []
    for kind, *content in blocks:
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{_inline_html(content[0])}</{kind}>")
        elif kind == "warnings":
            parts.append(
                "<ul class='warnings'>"
                + "".join(f"<li><strong>Caution:</strong> {_inline_html(w)}</li>" for w in content[0])
                + "</ul>"
            )
        elif kind == "table":
            header, rows = content
            parts.append(
                "<table><tr>"
                + "".join(f"<th>{html.escape(h)}</th>" for h in header)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
                + "</table>"
            )
        elif kind == "img":
            parts.append(f"<figure><img src='{html.escape(content[0])}' alt='{html.escape(content[0])}'></figure>")
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:90%}.warnings li{color:#a40000}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def _reshaped_models(train: Any) -> str:
    """A note when the trials' models are named variants with other depths or widths (the tiny
    studies' shrunken attos): the names in the tables are not the published architectures."""
    model = train.model
    if not (model.get("depths") or model.get("dims")):
        return ""
    shape = ", ".join(f"{key} {tuple(model[key])}" for key in ("depths", "dims") if model.get(key))
    return (
        f"Models: every trial's model.name is reshaped to {shape} (custom depths/dims): the names below are "
        "not the published architectures."
    )


def write_report(workdir: str) -> dict[str, Any]:
    """Write WORKDIR/report/{report.md, report.html, *.png, points.json}; returns what was written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config, record = load_sweep(workdir)
    spec, train = split_config(config)
    study = optuna.load_study(study_name=record["study_name"], storage=open_storage(spec, workdir))
    rows = trial_rows(study)
    points = aggregate(rows, spec)
    out_dir = os.path.join(workdir, "report")
    os.makedirs(out_dir, exist_ok=True)
    plots: list[str] = []
    for dim in spec.dims:
        name = (
            "weight_decay.png" if dim.key == "optim.weight_decay" else f"objective_vs_{dim.key.replace('.', '_')}.png"
        )
        if _plot_numeric(plt, points, spec, dim.key, os.path.join(out_dir, name)):
            plots.append(name)
    extras = _lr_batch_plots(plt, points, out_dir, spec)
    plots += extras.pop("plots", [])
    if _cost_plot(plt, points, train, os.path.join(out_dir, "accuracy_vs_cost.png")):
        plots.append("accuracy_vs_cost.png")
    if _curves_plot(rows, spec, workdir, os.path.join(out_dir, "curves.png")):
        plots.append("curves.png")

    states: dict[str, int] = defaultdict(int)
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] += 1
    best_text, warnings = headline(points, spec)
    blocks: list[tuple] = [
        ("h1", f"Study `{record['study_name']}`"),
        (
            "p",
            f"Objective: **{spec.objective}** ({spec.direction}); sampler {spec.sampler}; {spec.seeds} seed(s) per "
            f"point; pruner {spec.pruner}. Trials: " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(states.items())),
        ),
        ("p", f"Storage: `{record['storage']}` (live view: `optuna-dashboard {record['storage']}`)"),
        ("p", best_text),
    ]
    reshaped = _reshaped_models(train)
    if reshaped:
        blocks.append(("p", reshaped))
    if warnings:
        blocks.append(("warnings", warnings))
    if extras.get("optimal_lr"):
        blocks.append(
            (
                "p",
                "Optimal LR per batch size: "
                + ", ".join(
                    f"{b}: {lr:.3g}" + (" (at the edge of the LR range)" if int(b) in extras["lr_at_edge"] else "")
                    for b, lr in extras["optimal_lr"].items()
                ),
            )
        )
    if extras.get("surge_note"):
        blocks.append(("warnings", [extras["surge_note"]]))
    surge = extras.get("surge")
    if surge:
        where = "inside the sampled range" if surge["inside"] else "outside the sampled batch sizes (only bounded)"
        blocks.append(
            (
                "p",
                f"Surge peak estimate **B* ≈ {surge['peak_batch']:.0f}** ({where}; fit rmse "
                f"{surge['rmse_log']:.3f} in log LR; peak LR {surge['lr_max']:.3g})",
            )
        )
    header, body = _table(points, spec)
    blocks += [("h2", "Points (mean ± std over the complete seeds)"), ("table", header, body)]
    blocks += [
        ("h2", "Plots"),
        (
            "p",
            "Hollow markers: points with fewer complete seeds than the study asked for; "
            "red rings: the best of a slice at the edge of a swept range.",
        ),
    ]
    blocks += [("img", p) for p in plots]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(_markdown(blocks))
    with open(os.path.join(out_dir, "report.html"), "w") as f:
        f.write(_html(f"Study {record['study_name']}", blocks))
    summary = {
        "points": points,
        "plots": plots,
        **extras,
        "states": dict(states),
        "headline": best_text,
        "warnings": warnings,
    }
    with open(os.path.join(out_dir, "points.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    return summary
