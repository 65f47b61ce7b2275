"""Study reports: a markdown and an HTML table per study (mean +- std over seeds per point) and
PNG plots: objective vs each swept parameter, accuracy vs LR per batch size, the optimal LR vs
batch size with the estimated surge peak B*, the weight-decay curve, accuracy vs params / GMACs /
resolution, and the training curves of the best trials."""

from __future__ import annotations

import html
import json
import math
import os
from collections import defaultdict
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from convnext_jax.sweep.spec import SweepSpec, split_config
from convnext_jax.sweep.study import load_sweep, open_storage
from convnext_jax.sweep.surge import bracketed, fit_surge, optimal_lr, surge_curve
from convnext_jax.train.metrics import read_metrics

ARCH_KEYS = ("model.name", "data.image_size")


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per finished trial of a point (complete, pruned or failed). A failed trial that was
    retried (its worker died) is replaced by its retry."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in optuna.storages.RetryFailedTrialCallback.retry_history(t)}
    rows = []
    for t in trials:
        if "seed" not in t.user_attrs or t.state in (TrialState.WAITING, TrialState.RUNNING) or t.number in retried:
            continue
        rows.append({**t.user_attrs, "number": t.number, "state": t.state.name, "params": dict(t.params),
                     "value": t.value})
    return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def aggregate(rows: list[dict[str, Any]], spec: SweepSpec) -> list[dict[str, Any]]:
    """Per point: params, counts by state, and mean/std over the complete seeds of each metric."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[json.dumps(row["params"], sort_keys=True)].append(row)
    points = []
    for key, members in groups.items():
        done = [r for r in members if r["state"] == "COMPLETE"]
        point = {"params": json.loads(key), "complete": len(done), "pruned": sum(r["state"] == "PRUNED" for r in members),
                 "failed": sum(r["state"] == "FAIL" for r in members),
                 "diverged": sum("diverged" in r for r in done), "trials": [r["number"] for r in members]}
        for metric in ("value", "best_val_top1", "final_val_loss", "epochs_to_target", "img_per_s"):
            point[metric] = _mean_std([r.get(metric) for r in done])
        for metric in ("num_params", "gmacs_per_image"):
            values = [r[metric] for r in members if r.get(metric) is not None]
            point[metric] = values[0] if values else None
        points.append(point)
    sign = -1.0 if spec.direction == "maximize" else 1.0
    return sorted(points, key=lambda p: (math.isnan(p["value"][0]), sign * p["value"][0] if not math.isnan(
        p["value"][0]) else 0.0))


def _fmt(pair: tuple[float, float], digits: int = 4) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _table(points: list[dict[str, Any]], spec: SweepSpec) -> tuple[list[str], list[list[str]]]:
    keys = [d.key for d in spec.dims]
    header = keys + ["seeds done", f"{spec.objective} (mean ± std)", "best val top-1", "final val loss",
                     "epochs to target", "params (M)", "GMACs", "img/s", "pruned", "failed", "diverged"]
    body = []
    for p in points:
        body.append([str(p["params"].get(k, "")) for k in keys] + [
            f"{p['complete']}/{p['complete'] + p['pruned'] + p['failed']}", _fmt(p["value"]),
            _fmt(p["best_val_top1"]), _fmt(p["final_val_loss"]), _fmt(p["epochs_to_target"], 1),
            f"{p['num_params'] / 1e6:.3f}" if p["num_params"] else "-",
            f"{p['gmacs_per_image']:.4g}" if p["gmacs_per_image"] else "-", _fmt(p["img_per_s"], 0),
            str(p["pruned"]), str(p["failed"]), str(p["diverged"])])
    return header, body


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


def _plot_numeric(plt, points, spec, key, path):
    data = [(p["params"][key], p["value"]) for p in points if key in p["params"] and not math.isnan(p["value"][0])]
    if len(data) < 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _ in data):
        return False
    data.sort()
    x = [d[0] for d in data]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(x, [d[1][0] for d in data], yerr=[d[1][1] for d in data], marker="o", capsize=3)
    if _is_log(spec, key, x):
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel(f"{spec.objective} (mean ± std over seeds)")
    _finish(plt, fig, [ax], path)
    return True


def _lr_batch_plots(plt, points, out_dir) -> dict[str, Any]:
    by_batch: dict[int, list[tuple[float, float, float]]] = defaultdict(list)
    for p in points:
        if "optim.lr" in p["params"] and "batch_size" in p["params"] and not math.isnan(p["best_val_top1"][0]):
            by_batch[int(p["params"]["batch_size"])].append((p["params"]["optim.lr"], *p["best_val_top1"]))
    if not by_batch:
        return {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for batch in sorted(by_batch):
        rows = sorted(by_batch[batch])
        ax.errorbar([r[0] for r in rows], [r[1] for r in rows], yerr=[r[2] for r in rows], marker="o", capsize=3,
                    label=f"batch {batch}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("best val top-1 (mean ± std)")
    _finish(plt, fig, [ax], os.path.join(out_dir, "accuracy_vs_lr_by_batch.png"), legend=True)
    plots = ["accuracy_vs_lr_by_batch.png"]
    optimum = {b: optimal_lr([r[0] for r in rows], [r[1] for r in rows]) for b, rows in by_batch.items()
               if len(rows) >= 2}
    edge = sorted(b for b, rows in by_batch.items() if len(rows) >= 2 and not bracketed(
        [r[0] for r in rows], [r[1] for r in rows]))
    result: dict[str, Any] = {"optimal_lr": {str(b): lr for b, lr in sorted(optimum.items())}, "lr_at_edge": edge,
                              "plots": plots}
    inside = {b: lr for b, lr in optimum.items() if b not in edge}
    if len(inside) < 3 and optimum:
        result["surge_note"] = (f"B* not estimated: the optimal LR is bracketed by the swept LRs for only {len(inside)} "
                                f"batch size(s) (at the edge of the LR range for {edge}); widen optim.lr")
    if len(optimum) >= 2:
        batches = np.array(sorted(optimum), float)
        lrs = np.array([optimum[int(b)] for b in batches])
        fit = fit_surge(np.array(sorted(inside), float), np.array([inside[b] for b in sorted(inside)])) \
            if len(inside) >= 3 else None
        result["surge"] = fit
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(batches, lrs, "o", label="optimal LR (best mean accuracy)")
        if fit:
            grid = np.exp(np.linspace(math.log(batches.min()), math.log(batches.max()), 200))
            ax.plot(grid, surge_curve(grid, fit["lr_max"], fit["peak_batch"]), "-",
                    label=f"surge fit, B* ≈ {fit['peak_batch']:.0f}" + ("" if fit["inside"] else " (outside range)"))
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
    rows = [p for p in points if not math.isnan(p["best_val_top1"][0]) and p["num_params"]
            and any(k in ARCH_KEYS or k.startswith("model.options.") for k in p["params"])]
    if len(rows) < 2:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for p in rows:
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in p["params"].items())
        resolution = p["params"].get("data.image_size", train_config.data.image_size)
        for ax, x in zip(axes, (p["num_params"] / 1e6, p["gmacs_per_image"] or float("nan"), resolution)):
            ax.errorbar([x], [p["best_val_top1"][0]], yerr=[p["best_val_top1"][1]], marker="o", capsize=3, label=label)
    for ax, name in zip(axes, ("parameters (M)", "GMACs per image", "resolution (px)")):
        ax.set_xlabel(name)
        ax.set_ylabel("best val top-1 (mean ± std)")
    _finish(plt, fig, list(axes), path, legend=True)
    return True


def _curves_plot(plt, rows, spec, workdir, path, top: int = 5) -> bool:
    """Val top-1 per epoch and train loss per step of the best `top` complete trials."""
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    done.sort(key=lambda r: -r["value"] if spec.direction == "maximize" else r["value"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    drawn = 0
    for r in done[:top]:
        metrics_path = os.path.join(workdir, r["workdir"], "metrics.jsonl")
        if not os.path.exists(metrics_path):
            continue
        records = read_metrics(os.path.join(workdir, r["workdir"]))
        label = f"#{r['number']} " + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in r["params"].items())
        evals = [x for x in records if "val_top1" in x]
        train = [x for x in records if "train_loss" in x]
        left.plot([x["epoch"] for x in evals], [x["val_top1"] for x in evals], marker="o", label=label)
        right.plot([x["step"] for x in train], [x["train_loss"] for x in train], label=label)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return False
    left.set_xlabel("epoch")
    left.set_ylabel("val top-1")
    right.set_xlabel("optimizer step")
    right.set_ylabel("train loss")
    _finish(plt, fig, [left, right], path, legend=True)
    return True


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
        name = "weight_decay.png" if dim.key == "optim.weight_decay" else f"objective_vs_{dim.key.replace('.', '_')}.png"
        if _plot_numeric(plt, points, spec, dim.key, os.path.join(out_dir, name)):
            plots.append(name)
    extras = _lr_batch_plots(plt, points, out_dir)
    plots += extras.pop("plots", [])
    if _cost_plot(plt, points, train, os.path.join(out_dir, "accuracy_vs_cost.png")):
        plots.append("accuracy_vs_cost.png")
    if _curves_plot(plt, rows, spec, workdir, os.path.join(out_dir, "curves.png")):
        plots.append("curves.png")

    states = defaultdict(int)
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] += 1
    header, body = _table(points, spec)
    lines = [f"# Study `{record['study_name']}`", "",
             f"Objective: **{spec.objective}** ({spec.direction}); sampler {spec.sampler}; {spec.seeds} seed(s) per "
             f"point; pruner {spec.pruner}. Trials: " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(states.items())),
             f"Storage: `{record['storage']}` (live view: `optuna-dashboard {record['storage']}`)", ""]
    if points and not math.isnan(points[0]["value"][0]):
        lines += [f"Best point: {points[0]['params'] or '(base config)'} — {spec.objective} {_fmt(points[0]['value'])}", ""]
    surge = extras.get("surge")
    if extras.get("optimal_lr"):
        lines += ["Optimal LR per batch size: " + ", ".join(f"{b}: {lr:.3g}" for b, lr in extras["optimal_lr"].items())]
    if extras.get("surge_note"):
        lines += [extras["surge_note"], ""]
    if surge:
        where = "inside the sampled range" if surge["inside"] else "outside the sampled batch sizes (only bounded)"
        lines += [f"Surge peak estimate B* ≈ {surge['peak_batch']:.0f} ({where}; fit rmse {surge['rmse_log']:.3f} in "
                  f"log LR; peak LR {surge['lr_max']:.3g})", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += [""] + [f"![{p}]({p})" for p in plots]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    table = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body) + "</table>"
    intro = "".join(f"<p>{html.escape(line)}</p>" for line in lines[2:] if line and not line.startswith(("|", "!")))
    with open(os.path.join(out_dir, "report.html"), "w") as f:
        f.write(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(record['study_name'])}"
                "</title><style>table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}"
                f"</style></head><body><h1>Study {html.escape(record['study_name'])}</h1>{intro}{table}" +
                "".join(f"<p><img src='{p}'></p>" for p in plots) + "</body></html>")
    summary = {"points": points, "plots": plots, **extras, "states": dict(states)}
    with open(os.path.join(out_dir, "points.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    return summary
