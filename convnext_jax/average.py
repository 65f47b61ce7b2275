"""python -m convnext_jax.average --workdir DIR --top_k N — average the weights of a run's N best
kept checkpoints (by the run's selection metric, or --metric), write them as a weights directory
and validate it on the run's validation data (timm's checkpoint averaging, `avg_checkpoints.py`).

    python -m convnext_jax.average --workdir runs/mine --top_k 3            # -> runs/mine/averaged_top3
    python -m convnext_jax.validate runs/mine/averaged_top3 --data folder:/data/other
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import jax
import numpy as np

from convnext_jax.cli import ArgumentParser, reports_user_errors
from convnext_jax.errors import ConfigError
from convnext_jax.models.fcmae import is_fcmae_config
from convnext_jax.run_files import CONFIG_FILE
from convnext_jax.train import checkpoint as checkpoints
from convnext_jax.weights import tree

METRICS = {"val_top1": max, "val_top1_ema": max, "val_top1_best": max, "val_loss": min, "val_loss_ema": min}


def ranked_steps(workdir: str, metric: str, top_k: int) -> list[tuple[int, float]]:
    """The `top_k` kept checkpoints with the best `metric`, best first: [(step, value)]."""
    from convnext_jax.train.metrics import read_metrics

    kept = set(checkpoints.checkpoint_steps(workdir))
    if not kept:
        raise ConfigError(f"{workdir} has no checkpoints to average")
    evals = {r["step"]: r[metric] for r in read_metrics(workdir) if metric in r and r.get("step") in kept}
    if len(evals) < top_k:
        raise ConfigError(
            f"--top_k {top_k}, but only {len(evals)} of the kept checkpoints of {workdir} have a "
            f"{metric} evaluation (steps {sorted(evals) or sorted(kept)}): keep more with "
            f"checkpoint.keep_best when training, or average fewer"
        )
    order = sorted(evals.items(), key=lambda item: item[1], reverse=METRICS[metric] is max)
    return order[:top_k]


def average_params(trees: list[Any]) -> Any:
    """The element-wise mean of parameter trees (accumulated in float64)."""
    return jax.tree.map(
        lambda *leaves: (np.sum([np.asarray(x, np.float64) for x in leaves], axis=0) / len(leaves)).astype(
            np.asarray(leaves[0]).dtype
        ),
        *trees,
    )


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m convnext_jax.average", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--top_k", type=int, default=3)
    p.add_argument("--metric", choices=sorted(METRICS), help="rank by this (default: the run's select_on)")
    p.add_argument("--ema", action="store_true", help="average the EMA weights (default: val_top1_ema ranks EMA)")
    p.add_argument("--out", default="", help="the weights directory to write (default WORKDIR/averaged_topK)")
    p.add_argument("--batch_size", type=int, default=256, help="of the validation")
    p.add_argument("--results_csv", default="", help="append the validation row to this CSV")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    return p


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    from convnext_jax import validate
    from convnext_jax.models.registry import build_model
    from convnext_jax.train.tasks import selection_metric
    from convnext_jax.train.workdir import RunDir
    from convnext_jax.weights.directory import save_weights

    args = parser().parse_args(argv)
    if args.top_k < 1:
        raise ConfigError(f"--top_k must be >= 1; got {args.top_k}")
    if not os.path.isfile(os.path.join(args.workdir, CONFIG_FILE)):
        raise ConfigError(f"{args.workdir} is not a training workdir (no config.json)")
    metric = args.metric or selection_metric(RunDir(args.workdir).stored_config())[0]
    use_ema = args.ema or metric.endswith("_ema")
    out = args.out or os.path.join(args.workdir, f"averaged_top{args.top_k}")
    if os.path.exists(out) and not args.force:
        raise ConfigError(f"{out} exists: pass --force to overwrite, or --out elsewhere")
    if args.results_csv:
        validate.check_csv(args.results_csv)
    ranked = ranked_steps(args.workdir, metric, args.top_k)
    trees = [checkpoints.read_checkpoint_params(args.workdir, step, use_ema=use_ema) for step, _ in ranked]
    averaged = average_params(trees)
    cfg = tree.infer_fcmae_config(averaged) if tree.is_fcmae_tree(averaged) else tree.infer_config(averaged)
    if is_fcmae_config(cfg):
        raise ConfigError(f"{args.workdir} is an FCMAE pre-training run: average its fine-tuned run instead")
    model = build_model(cfg)
    tree.load_tree(model, averaged, source="the averaged weights")
    defaults = validate.workdir_defaults(args.workdir)
    save_weights(model, out, overwrite=args.force, evaluation=dataclasses.asdict(defaults))  # validate DIR uses it
    print(
        f"averaged {'EMA ' if use_ema else ''}weights of steps "
        + ", ".join(f"{step} ({metric} {value:.4f})" for step, value in ranked)
        + f" -> {out}",
        file=sys.stderr,
    )
    row = validate.validate(validate.parser().parse_args([out, "--batch_size", str(args.batch_size)]), defaults)
    row["model"] = f"{row['model']} avg{args.top_k}"
    row["weights"] = f"{out} (mean of steps {', '.join(str(step) for step, _ in ranked)})"
    if jax.process_index() == 0:
        if args.results_csv:
            validate.append_csv(args.results_csv, row)
        print(validate.markdown([row]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
