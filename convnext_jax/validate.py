"""python -m convnext_jax.validate WEIGHTS [--data SOURCE] ... — timm's validate.py for convnext_jax.

WEIGHTS is a training workdir (`--checkpoint latest|best|STEP`, `--ema` for its EMA weights), a
convnext_jax weights directory (e.g. from `python -m convnext_jax.average`), or a timm / official
PyTorch checkpoint (.pth / .bin / .safetensors). The data is any `data.source` (a workdir's own
validation data by default). Evaluation runs on every device; the result (top-1, top-5, loss,
img/s, params, GMACs, image size, crop_pct, interpolation) is printed as a markdown table and
appended to `--results_csv` in timm's column style.

    python -m convnext_jax.validate runs/mine --checkpoint best
    python -m convnext_jax.validate /w/convnext_tiny.pth --data tfds:imagenet2012 --data_dir /data/tfds \\
        --dtype bfloat16 --batch_size 256 --results_csv results.csv
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import time
from typing import Any

import jax
from flax import nnx

from convnext_jax.cli import ArgumentParser, reports_user_errors
from convnext_jax.errors import ConfigError
from convnext_jax.models.fcmae import is_fcmae_config
from convnext_jax.models.params import forward_macs
from convnext_jax.models.variants import display_name
from convnext_jax.run_files import CONFIG_FILE
from convnext_jax.train import checkpoint as checkpoints
from convnext_jax.weights import load, pytorch, tree

COLUMNS = (
    "model",
    "top1",
    "top1_err",
    "top5",
    "top5_err",
    "loss",
    "param_count",
    "gmacs",
    "img_size",
    "crop_pct",
    "interpolation",
    "img_per_s",
    "batch_size",
    "dtype",
    "data",
    "count",
    "weights",
)
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


@dataclasses.dataclass
class Evaluation:
    """What to evaluate and how: the defaults a workdir's config gives, then the flags."""

    data: str
    data_dir: str
    image_size: int
    crop_pct: float
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    model_name: str
    class_names: list[str] | None = None


def workdir_defaults(path: str) -> Evaluation:
    """How the run in workdir `path` was evaluated: its data, size, crop, normalisation, classes."""
    from convnext_jax.train.workdir import RunDir

    run = RunDir(path)
    config = run.stored_config()
    data = config.data
    normalised = data.normalize
    return Evaluation(
        data=data.source,
        data_dir=data.data_dir,
        image_size=data.image_size,
        crop_pct=data.crop_pct,
        mean=tuple(data.mean) if normalised else None,
        std=tuple(data.std) if normalised else None,
        model_name=config.model.name,
        class_names=run.class_names(),
    )


def weights_dir_defaults(path: str) -> Evaluation | None:
    """How the weights in directory `path` were evaluated (its evaluation.json, written by `average`)."""
    from convnext_jax.weights.directory import load_evaluation

    record = load_evaluation(path)
    if record is None:
        return None
    fields = {f.name for f in dataclasses.fields(Evaluation)}
    record = {
        k: tuple(v) if isinstance(v, list) and k in ("mean", "std") else v for k, v in record.items() if k in fields
    }
    return Evaluation(**record)


def best_step(path: str) -> tuple[dict[str, Any], str]:
    """The metrics record of a workdir's kept checkpoint with the best value of the run's selection
    metric, and that metric's name."""
    from convnext_jax.train.metrics import read_metrics
    from convnext_jax.train.tasks import selection_metric
    from convnext_jax.train.workdir import RunDir

    metric, mode = selection_metric(RunDir(path).stored_config())
    kept = set(checkpoints.checkpoint_steps(path))
    evals = [r for r in read_metrics(path) if metric in r and r.get("step") in kept]
    if not evals:
        raise ConfigError(
            f"{path}: no kept checkpoint has a {metric} evaluation (steps {sorted(kept)}); use "
            f"--checkpoint latest or a step"
        )
    better = max if mode == "max" else min
    return better(evals, key=lambda r: r[metric]), metric


def _load_model(path: str, kind: str, args: Any) -> tuple[Any, str]:
    """The classifier stored at `path` (weights loaded) and a description of the weights."""
    from convnext_jax.models.registry import build_model

    use_ema = args.ema
    step = None
    if kind == "workdir":
        if args.checkpoint == "best":
            record, metric = best_step(path)
            step = int(record["step"])
            if not use_ema and metric == "val_top1_ema":
                use_ema = True
            elif not use_ema and metric == "val_top1_best":
                use_ema = record["val_top1_ema"] > record["val_top1"]
        elif args.checkpoint != "latest":
            try:
                step = int(args.checkpoint)
            except ValueError:
                raise ConfigError(
                    f"--checkpoint must be latest, best or a step number; got {args.checkpoint!r}"
                ) from None
        step = checkpoints.checkpoint_steps(path)[-1] if step is None else step
        params = checkpoints.read_checkpoint_params(path, step, use_ema=use_ema)
        cfg = tree.infer_fcmae_config(params) if tree.is_fcmae_tree(params) else tree.infer_config(params)
    else:
        cfg, read = load.read_source(path, use_ema=use_ema)
    if is_fcmae_config(cfg):
        raise ConfigError(
            f"{path} holds FCMAE pre-training weights (an encoder and a pixel decoder, no "
            "classifier): fine-tune them first (configs/finetune.py), then validate the result"
        )
    if not cfg.num_classes:
        raise ConfigError(f"{path} holds a feature extractor without a classifier head: nothing to validate")
    if args.model:
        from convnext_jax.models.variants import model_config

        wanted = model_config(args.model)
        if (wanted.depths, wanted.dims, wanted.use_grn) != (cfg.depths, cfg.dims, cfg.use_grn):
            raise ConfigError(
                f"{path} holds a {pytorch.describe(cfg)}, not {args.model} "
                f"({pytorch.describe(wanted)}): drop --model or give {args.model}'s weights"
            )
    model = build_model(dataclasses.replace(cfg, dtype=args.dtype))
    if kind == "workdir":
        tree.load_tree(model, params, source=f"the weights of {path} (step {step})")
        what = f"{path} step {step}" + (" EMA" if use_ema else "")
    else:
        load.load_pretrained(model, path, use_ema=use_ema, read=read)  # the file is read once
        what = path + (" EMA" if use_ema else "")
    return model, what


def _source(evaluation: Evaluation, split: str) -> Any:
    from convnext_jax.data import make_source
    from convnext_jax.data.robustness import extra_set_of, extra_set_source

    try:
        if extra_set_of(evaluation.data):  # ImageNet-A/-R/-V2/-Sketch/ReaL: their split and scoring
            return extra_set_source(evaluation.data, evaluation.data_dir or None)
        return make_source(
            evaluation.data,
            split,
            data_dir=evaluation.data_dir or None,
            image_size=evaluation.image_size,
            class_names=evaluation.class_names,
        )
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"data {evaluation.data!r} ({split} split): {e}") from None


def validate(args: Any, defaults: Evaluation | None = None) -> dict[str, Any]:
    """Evaluate the weights `args.weights` as the flags say; returns the result row. `defaults`: how
    to evaluate when the flags do not say (a workdir brings its own `workdir_defaults`)."""
    from convnext_jax.data import eval_transforms
    from convnext_jax.data.on_device import InputStage
    from convnext_jax.data.robustness import eval_classes_of, extra_set_of
    from convnext_jax.train.confusion import write_confusion
    from convnext_jax.train.evaluate import Evaluator, say_left_out
    from convnext_jax.train.parallel import data_parallel
    from convnext_jax.train.tasks import Classification
    from convnext_jax.train.tasks.classification import CONFUSION_MAX_CLASSES

    kind = load.source_kind(args.weights)
    if defaults is not None:
        evaluation = dataclasses.replace(defaults)
    elif kind == "workdir" and os.path.isfile(os.path.join(args.weights, CONFIG_FILE)):
        evaluation = workdir_defaults(args.weights)
    elif kind == "weights_dir" and (saved := weights_dir_defaults(args.weights)) is not None:
        evaluation = saved
    else:
        if not args.data:
            raise ConfigError(
                f"--data is needed for {args.weights} (a workdir brings its own): e.g. --data "
                "tfds:imagenet2012 --data_dir /data/tfds, or --data folder:/data/mine"
            )
        evaluation = Evaluation(data="", data_dir="", image_size=224, crop_pct=0.875, model_name="", **IMAGENET)
    own_data = evaluation.data
    for field in ("data", "data_dir", "image_size", "crop_pct", "mean", "std"):
        if getattr(args, field) not in (None, ""):
            value = getattr(args, field)
            setattr(evaluation, field, tuple(value) if isinstance(value, list) else value)
    if evaluation.data != own_data:
        evaluation.class_names = None  # another dataset: its own classes
    model, weights = _load_model(args.weights, kind, args)
    source = _source(evaluation, args.split)
    classes = getattr(source, "num_classes", None)
    if classes is not None and classes != model.cfg.num_classes:
        raise ConfigError(
            f"{evaluation.data} ({args.split}) has {classes} classes but the weights' classifier has "
            f"{model.cfg.num_classes}: validate on a dataset with the same classes (or fine-tune the "
            "weights on this one)"
        )
    layout = data_parallel()
    if args.batch_size % layout.replicas:
        raise ConfigError(
            f"--batch_size {args.batch_size} does not split over the {layout.replicas} devices: use a "
            f"multiple of {layout.replicas}"
        )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    extra = extra_set_of(evaluation.data)
    task = Classification(model.cfg.num_classes, eval_classes=eval_classes_of(evaluation.data))
    evaluator = Evaluator(
        source,
        eval_transforms(evaluation.image_size, crop_pct=evaluation.crop_pct),
        graphdef,
        rest,
        task,
        layout,
        args.batch_size // jax.process_count(),
        InputStage(mean=evaluation.mean, std=evaluation.std),
    )
    params = layout.place_state(params)
    result = evaluator(params)
    metrics = result.metrics
    say_left_out(result, "")
    if getattr(args, "pictures", "") and jax.process_index() == 0:
        if result.confusion is None:
            raise ConfigError(
                f"--pictures: {model.cfg.num_classes} classes is more than the confusion matrix's "
                f"{CONFUSION_MAX_CLASSES}"
            )
        names = evaluation.class_names or getattr(source, "class_names", None)
        write_confusion(
            result.confusion,
            args.pictures,
            names,
            title=f"{weights}: top-1 {metrics['val_top1']:.4f} on {evaluation.data} {args.split}",
        )
    name = args.model or display_name(evaluation.model_name, model.cfg)
    top1 = 100.0 * metrics["val_top1"]
    top5 = 100.0 * metrics["val_top5"] if "val_top5" in metrics else None  # not with 5 classes or fewer
    return {
        "model": name,
        "top1": round(top1, 3),
        "top1_err": round(100.0 - top1, 3),
        "top5": None if top5 is None else round(top5, 3),
        "top5_err": None if top5 is None else round(100 - top5, 3),
        "loss": round(metrics["val_loss"], 4),
        "param_count": round(sum(x.size for x in jax.tree.leaves(params)) / 1e6, 2),
        "gmacs": round(forward_macs(model.cfg, evaluation.image_size) / 1e9, 3),
        "img_size": evaluation.image_size,
        "crop_pct": evaluation.crop_pct,
        "interpolation": "bicubic",
        "img_per_s": round(result.images_per_second or 0.0, 1),
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "data": f"{evaluation.data} {extra[1].split if extra else args.split}",
        "count": metrics["val_count"],
        "skipped": result.skipped,
        "weights": weights,
    }


def check_csv(path: str) -> bool:
    """Whether the results CSV exists (with our columns); another file there is an error."""
    exists = os.path.isfile(path) and os.path.getsize(path) > 0
    if exists:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if tuple(header) != COLUMNS:
            raise ConfigError(f"{path} has other columns ({', '.join(header[:5])}, ...): give a new --results_csv")
    return exists


def append_csv(path: str, row: dict[str, Any]) -> None:
    """Append `row` to the results CSV (the header written once)."""
    exists = check_csv(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        if not exists:
            writer.writeheader()
        writer.writerow(row)


def markdown(rows: list[dict[str, Any]]) -> str:
    shown = ("model", "top1", "top5", "loss", "param_count", "gmacs", "img_size", "crop_pct", "img_per_s", "weights")
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join("–" if row[k] is None else str(row[k]) for k in shown) + " |" for row in rows]
    return "\n".join(lines)


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m convnext_jax.validate", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "weights", help="a training workdir, a convnext_jax weights directory, or a timm/official PyTorch checkpoint"
    )
    p.add_argument("--checkpoint", default="latest", help="workdir: latest, best (by the run's select_on) or a step")
    p.add_argument("--ema", action="store_true", help="the EMA weights (workdir, or a PyTorch checkpoint's model_ema)")
    p.add_argument("--model", default="", help="check that the weights are this variant (and name the CSV row)")
    p.add_argument(
        "--data",
        default="",
        help="a data.source (default: the workdir's): tfds:NAME, folder:/path, prepared:/path, embedded:digits",
    )
    p.add_argument("--data_dir", default="", help="TFDS data_dir")
    p.add_argument("--split", default="val", help="the split (folders: the subfolder; TFDS: e.g. validation)")
    p.add_argument("--image_size", type=int, help="default: the workdir's, else 224")
    p.add_argument("--crop_pct", type=float, help="default: the workdir's, else 0.875")
    p.add_argument(
        "--mean", type=float, nargs=3, help="per-channel mean (RGB, 0..1); default: the workdir's, else ImageNet's"
    )
    p.add_argument("--std", type=float, nargs=3, help="per-channel std; default: the workdir's, else ImageNet's")
    p.add_argument("--batch_size", type=int, default=256, help="global, over every device")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--results_csv", default="", help="append the result row to this CSV")
    p.add_argument(
        "--pictures", default="", help="write confusion.png and per_class.csv into this directory (up to 100 classes)"
    )
    return p


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.batch_size < 1:
        raise ConfigError(f"--batch_size must be >= 1; got {args.batch_size}")
    if args.crop_pct is not None and not 0.0 < args.crop_pct <= 1.0:
        raise ConfigError(f"--crop_pct must be in (0, 1]; got {args.crop_pct}")
    if args.results_csv:
        check_csv(args.results_csv)  # before the evaluation, not after
    started = time.perf_counter()
    row = validate(args)
    if jax.process_index() == 0:
        if args.results_csv:
            append_csv(args.results_csv, row)
        print(markdown([row]))
        left_out = f", {row['skipped']} unreadable left out" if row["skipped"] else ""
        print(
            f"({row['count']} images{left_out}, {time.perf_counter() - started:.1f} s"
            + (f"; appended to {args.results_csv}" if args.results_csv else "")
            + ")",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
