"""python -m convnext_jax.bench {train,infer,fcmae,dwconv,compile,comms,memory,data} ... — markdown tables (and --json).

Each subcommand has its own --help (python -m convnext_jax.bench train --help)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any

import jax

from convnext_jax.bench.timing import Prepared, add_speedup, markdown_table, spread_warning, time_interleaved
from convnext_jax.cli import ArgumentParser, reports_user_errors
from convnext_jax.errors import ConfigError
from convnext_jax.ops import impl_choices


def _environment() -> dict[str, Any]:
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": str(jax.devices()),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def _torch_variants(args: argparse.Namespace) -> list[bool]:
    """torch.compile off / on, as asked for by --torch / --torch-compile."""
    return ([False] if args.torch else []) + ([True] if args.torch_compile else [])


def _measure(prepared: dict[str, Prepared], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time every contender side by side (interleaved rounds) and return their rows."""
    timings = time_interleaved(
        {name: p.run for name, p in prepared.items()}, rounds=args.rounds, steps=args.steps, warmup=args.warmup
    )
    rows = []
    for name, p in prepared.items():
        rows.append({**p.row(timings[name]), "framework": name})
        print(f"  {name}: {rows[-1]['img_per_s']:.1f} img/s", file=sys.stderr)
    return rows


def _train(args: argparse.Namespace) -> list[dict[str, Any]]:
    from convnext_jax.bench.jax_step import prepare_jax_train_step

    common = dict(batch_size=args.batch_size, image_size=args.image_size, num_classes=args.num_classes)
    prepared: dict[str, Prepared] = {}
    for impl in args.dwconv_impl:
        for scan in args.scan:
            for remat in args.remat:
                name = (
                    f"jax {args.dtype} dw={impl}{' scan' if scan else ''}{f' remat={remat}' if remat != 'none' else ''}"
                )
                prepared[name] = prepare_jax_train_step(
                    args.model,
                    dtype=args.dtype,
                    dwconv_impl=impl,
                    scan_blocks=scan,
                    remat=remat,
                    drop_path_rate=args.drop_path_rate,
                    **common,
                )
    if _torch_variants(args):
        from convnext_jax.bench.torch_step import prepare_torch_train_step, torch_name

        bf16 = args.dtype == "bfloat16"
        for compile_ in _torch_variants(args):
            prepared[torch_name(compile_, bf16)] = prepare_torch_train_step(
                args.model, compile=compile_, bf16=bf16, drop_path_rate=args.drop_path_rate, **common
            )
    return _print_throughput(_measure(prepared, args), args, "train step (AdamW)")


def _print_throughput(rows: list[dict[str, Any]], args: argparse.Namespace, what: str) -> list[dict[str, Any]]:
    for row in rows:
        row["step_ms"] = row["median_s"] * 1e3
        row["min_ms"] = row["min_s"] * 1e3
    speedup = add_speedup(rows)
    print(
        f"\n{args.model}, {args.image_size}px, batch {args.batch_size}, {what}, median of {args.rounds} interleaved "
        f"rounds x {args.steps} calls\n"
    )
    print(
        markdown_table(
            rows,
            [
                "framework",
                "img_per_s",
                speedup,
                "x (min)",
                "step_ms",
                "min_ms",
                "compile_s",
                "mfu",
                "xla_peak_mib",
                "device_peak_mib",
            ],
        )
    )
    warning = spread_warning(rows)
    if warning:
        print("\n" + warning)
    return rows


def _infer(args: argparse.Namespace) -> list[dict[str, Any]]:
    from convnext_jax.bench.jax_step import prepare_jax_inference

    common = dict(batch_size=args.batch_size, image_size=args.image_size, num_classes=args.num_classes)
    prepared: dict[str, Prepared] = {
        f"jax {args.dtype} dw={impl}": prepare_jax_inference(args.model, dtype=args.dtype, dwconv_impl=impl, **common)
        for impl in args.dwconv_impl
    }
    if _torch_variants(args):
        from convnext_jax.bench.torch_step import prepare_torch_inference, torch_name

        bf16 = args.dtype == "bfloat16"
        for compile_ in _torch_variants(args):
            prepared[torch_name(compile_, bf16)] = prepare_torch_inference(
                args.model, compile=compile_, bf16=bf16, **common
            )
    return _print_throughput(_measure(prepared, args), args, "inference (eval forward)")


def _fcmae(args: argparse.Namespace) -> list[dict[str, Any]]:
    from convnext_jax.bench.fcmae_step import prepare_jax_fcmae_step, prepare_torch_fcmae_step, removed_compute
    from convnext_jax.bench.torch_step import torch_name

    common = dict(batch_size=args.batch_size, image_size=args.image_size)
    prepared: dict[str, Prepared] = {
        f"jax {args.dtype} dw={impl}": prepare_jax_fcmae_step(args.model, dtype=args.dtype, dwconv_impl=impl, **common)
        for impl in args.dwconv_impl
    }
    for compile_ in _torch_variants(args):
        name = torch_name(compile_, args.dtype == "bfloat16", "torch dense")
        prepared[name] = prepare_torch_fcmae_step(args.model, compile=compile_, bf16=args.dtype == "bfloat16", **common)
    rows = _print_throughput(_measure(prepared, args), args, "FCMAE pre-training step (AdamW, mask 0.6)")
    import convnext_jax as cj

    waste = removed_compute(cj.create_fcmae(args.model).cfg, args.image_size)
    print(
        f"\nDense compute: {waste['gmacs_per_image']:.3f} GMACs per image, of which {waste['wasted_gmacs']:.3f} "
        f"({100 * waste['wasted_share']:.0f}%) on removed positions ({100 * waste['removed_fraction']:.0f}% of "
        "the patches; the encoder after the stem computes them and throws them away)"
    )
    for row in rows:
        row.update(waste)
    return rows


def _dwconv(args: argparse.Namespace) -> list[dict[str, Any]]:
    from convnext_jax.bench.dwconv_bench import bench_dwconv

    rows = []
    for size, channels in zip(args.sizes, args.channels):
        rows += bench_dwconv(
            args.batch_size, size, channels, impls=tuple(args.impls), steps=args.steps, with_torch=not args.no_torch
        )
    print(f"\n7x7 depthwise conv, median of {args.steps} calls\n")
    print(markdown_table(rows, ["impl", "shape (NHWC)", "fwd_ms", "fwd_bwd_ms"]))
    return rows


def _compile(args: argparse.Namespace) -> list[dict[str, Any]]:
    from convnext_jax.bench.compile_bench import bench_stage_compile

    rows = [bench_stage_compile(depth, scan=scan) for scan in (False, True) for depth in args.depths]
    print("\nCompile time of value_and_grad for one ConvNeXt stage (dim 64, 64 px, batch 8)\n")
    print(markdown_table(rows, ["mode", "depth", "compile_s"]))
    return rows


def _comms(args: argparse.Namespace) -> list[dict[str, Any]]:
    """All-reduces of the compiled train step per accumulation setting (count, bytes, inside loops)."""
    import jax.numpy as jnp
    from flax import nnx

    import convnext_jax as cj
    from convnext_jax.bench.collectives import all_reduce_stats
    from convnext_jax.bench.jax_step import bench_optimizer
    from convnext_jax.train.state import TrainState
    from convnext_jax.train.steps import make_train_step
    from convnext_jax.train.tasks import Classification

    model = cj.create_model(args.model, num_classes=args.num_classes)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = bench_optimizer(params)
    step = jax.jit(make_train_step(graphdef, rest, tx, Classification(args.num_classes, 0.1)))
    param_mib = 4 * cj.count_params(params) / 1024**2
    rows = []
    for accum in args.accum:
        batch = args.batch_size
        shape = (accum, batch // accum, args.image_size, args.image_size, 3)
        images = jnp.zeros(shape, jnp.float32)
        labels = jnp.zeros(shape[:2], jnp.int32)
        hlo = (
            step.lower(TrainState.create(params, tx), {"image": images, "label": labels}, jax.random.key(0))
            .compile()
            .as_text()
        )
        stats = all_reduce_stats(hlo)
        rows.append(
            {
                "devices": jax.device_count(),
                "accum": accum,
                "all_reduces": stats["count"],
                "in_loops": stats["in_loops"],
                "all_reduce_mib": stats["bytes"] / 1024**2,
                "param_mib": param_mib,
                "ratio": stats["bytes"] / 1024**2 / param_mib,
            }
        )
    print(f"\n{args.model}: all-reduces of one optimizer step (global batch {args.batch_size})\n")
    print(markdown_table(rows, ["devices", "accum", "all_reduces", "in_loops", "all_reduce_mib", "param_mib", "ratio"]))
    return rows


def _memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per-device state and XLA peak of the train step for each fsdp size (compiled, not run)."""
    from convnext_jax.bench.memory import fsdp_memory
    from convnext_jax.train.parallel import mesh_shape

    for fsdp in args.fsdp:
        mesh_shape(-1, fsdp, jax.device_count())  # a short error before any compilation
    rows = [
        fsdp_memory(
            args.model,
            fsdp=fsdp,
            batch_per_device=args.batch_size,
            image_size=args.image_size,
            num_classes=args.num_classes,
            ema=not args.no_ema,
            dtype=args.dtype,
            remat=args.remat,
            scan_blocks=args.scan,
        )
        for fsdp in args.fsdp
    ]
    budget = args.budget_gib
    for row in rows:
        row[f"fits_{budget:g}gib"] = row["xla_peak_gib"] <= budget
    print(
        f"\n{args.model}, {args.image_size}px, {args.dtype}, remat {args.remat}, AdamW"
        f"{'' if args.no_ema else ' + EMA'}, {jax.device_count()} {jax.default_backend()} devices: per-device "
        f"memory of the train step from XLA's memory analysis (compiled from abstract inputs, not run)\n"
    )
    print(
        markdown_table(
            rows,
            [
                "mesh",
                "batch_per_device",
                "params_m",
                "state_gib_per_device",
                "xla_args_gib",
                "xla_temp_gib",
                "xla_peak_gib",
                f"fits_{budget:g}gib",
            ],
        )
    )
    return rows


def worker_counts(args: argparse.Namespace) -> list[int]:
    """The worker counts of the scaling table: --worker_counts, or 1..--workers."""
    return sorted(set(args.worker_counts)) if args.worker_counts else list(range(1, args.workers + 1))


def _data(args: argparse.Namespace) -> list[dict[str, Any]]:
    import tempfile

    from convnext_jax.bench import data_bench

    args.workers = max(worker_counts(args))
    if args.source == "imagenet-like" and args.images * args.epochs < 2 * args.batch_size * args.workers:
        raise ConfigError(
            f"--images x --epochs ({args.images} x {args.epochs}) must give each of the --workers "
            f"{args.workers} worker processes at least 2 batches of --batch_size {args.batch_size}: "
            f"use --images {-(-2 * args.batch_size * args.workers // args.epochs)} or more"
        )
    with tempfile.TemporaryDirectory() as scratch:
        spec, root = args.source, None
        if spec == "imagenet-like":
            root = data_bench.make_imagenet_like(scratch, args.images)
            spec = f"folder:{root}"
        elif spec.startswith("folder:"):
            root = os.path.expanduser(spec.split(":", 1)[1])
        common = dict(batch_size=args.batch_size, image_size=args.image_size, epochs=args.epochs)
        prepared = None
        if args.prepared_max_size:
            if root is None:
                raise ConfigError("--prepared_max_size needs --source imagenet-like or folder:/path")
            prepared = data_bench.prepare_copy(
                spec, os.path.join(scratch, "prepared"), args.prepared_max_size, args.workers
            )
        rows = []
        for parallel in worker_counts(args):
            contenders = {
                "ours, threads": lambda: data_bench.our_loader(spec, workers=0, threads=parallel, **common),
                "ours, processes": lambda: data_bench.our_loader(spec, workers=parallel, threads=1, **common),
            }
            if args.pil_ops:
                contenders["ours, threads, Pillow resize/warp"] = lambda: data_bench.our_loader(
                    spec, workers=0, threads=parallel, image_ops="pil", **common
                )
            if prepared:
                contenders[f"ours, prepared {args.prepared_max_size}px, threads"] = lambda: data_bench.our_loader(
                    f"prepared:{prepared}", workers=0, threads=parallel, **common
                )
            if args.torch and root is not None:
                contenders["torchvision + timm"] = lambda: data_bench.torch_loader(root, workers=parallel, **common)
                if prepared:
                    contenders[f"torchvision + timm, {args.prepared_max_size}px files"] = lambda: (
                        data_bench.torch_loader(os.path.join(prepared, "files"), workers=parallel, **common)
                    )
            for name, make in contenders.items():
                rate = data_bench.images_per_second(make())
                rows.append({"pipeline": name, "workers": parallel, "img_per_s": rate, "per_worker": rate / parallel})
                print(f"  {name}, {parallel}: {rate:.0f} img/s", file=sys.stderr)
        base = {r["pipeline"]: r["img_per_s"] for r in rows if r["workers"] == 1}
        torch_at = {r["workers"]: r["img_per_s"] for r in rows if r["pipeline"] == "torchvision + timm"}  # originals
        for row in rows:
            row["scaling"] = row["img_per_s"] / (row["workers"] * base[row["pipeline"]])
            if row["workers"] in torch_at:
                row["vs_torch"] = row["img_per_s"] / torch_at[row["workers"]]
        stages = data_bench.stage_timings(
            spec,
            root if args.torch else None,
            image_size=args.image_size,
            count=min(args.images, 128),
            batch_size=args.batch_size,
            pil_ops=args.pil_ops,
        )
    print(
        f"\n{args.source} ({args.images} images), {args.image_size}px timm ConvNeXt augmentation, batch "
        f"{args.batch_size}, {args.epochs} epochs; workers = threads in one process, worker processes, or "
        f"DataLoader workers; scaling = img/s / (workers x the 1-worker img/s)\n"
    )
    print(markdown_table(rows, ["pipeline", "workers", "img_per_s", "per_worker", "scaling", "vs_torch"]))
    print("\nPer-image cost of each stage (one thread, ms)\n")
    print(markdown_table(stages, ["pipeline", "stage", "ms_per_image"]))
    return rows + stages


def _check(args: argparse.Namespace) -> None:
    """The arguments a benchmark cannot run with, as one short error before anything is built."""
    problems = []
    for name, low in (
        ("batch_size", 1),
        ("steps", 1),
        ("rounds", 1),
        ("warmup", 0),
        ("num_classes", 1),
        ("image_size", 32),
        ("workers", 1),
        ("epochs", 1),
        ("images", 2),
    ):
        value = getattr(args, name, None)
        if value is not None and value < low:
            why = " (the model's total stride)" if name == "image_size" else ""
            problems.append(f"--{name} must be >= {low}{why}; got {value}")
    if min(getattr(args, "worker_counts", None) or [1]) < 1:
        problems.append(f"--worker_counts must all be >= 1; got {args.worker_counts}")
    if getattr(args, "model", None):
        from convnext_jax.models.variants import model_config

        try:
            model_config(args.model)
        except ConfigError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError("; ".join(problems))


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m convnext_jax.bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train-step throughput, JAX vs the PyTorch reference")
    infer = sub.add_parser("infer", help="inference throughput, JAX vs the PyTorch reference")
    fcmae = sub.add_parser("fcmae", help="FCMAE pre-training step, JAX vs the dense PyTorch emulation")
    for p in (train, infer, fcmae):
        p.add_argument("--model", default="convnext_atto", help="a timm variant name (both frameworks build it)")
        p.add_argument("--image_size", type=int, default=64, help="input resolution (px)")
        p.add_argument("--batch_size", type=int, default=32, help="images per step")
        p.add_argument("--num_classes", type=int, default=1000, help="classifier outputs")
        p.add_argument(
            "--dtype",
            default="float32",
            choices=["float32", "bfloat16"],
            help="compute precision (bfloat16: JAX bf16 with fp32 params; PyTorch AMP autocast)",
        )
        p.add_argument(
            "--dwconv_impl",
            nargs="+",
            default=["auto"],
            choices=list(impl_choices("dwconv")),
            help="depthwise-conv implementations to time side by side",
        )
        p.add_argument("--torch", action="store_true", help="also time timm eager")
        p.add_argument("--torch_compile", action="store_true", help="also time timm + torch.compile")
        p.add_argument("--steps", type=int, default=5, help="timed calls per contender per round")
        p.add_argument("--rounds", type=int, default=4, help="interleaved rounds (all contenders take turns)")
        p.add_argument("--warmup", type=int, default=2, help="untimed calls per contender before timing")
    train.add_argument(
        "--scan",
        nargs="+",
        type=lambda s: s.lower() in ("1", "true", "yes"),
        default=[False],
        help="one or more of true/false",
    )
    train.add_argument(
        "--remat",
        nargs="+",
        default=["none"],
        choices=["none", "full", "dots"],
        help="rematerialisation policies (several: timed side by side)",
    )
    train.add_argument("--drop_path_rate", type=float, default=0.0, help="stochastic depth rate")
    dw = sub.add_parser("dwconv", help="7x7 depthwise conv forward/backward, JAX formulations vs PyTorch")
    dw.add_argument("--batch_size", type=int, default=32, help="images per call")
    dw.add_argument("--sizes", type=int, nargs="+", default=[16, 8, 4, 2], help="spatial size per shape")
    dw.add_argument("--channels", type=int, nargs="+", default=[40, 80, 160, 320], help="channels per shape")
    dw.add_argument(
        "--impls",
        nargs="+",
        default=["lax", "lax_vjp", "shift", "ffi"],
        choices=list(impl_choices("dwconv")[1:]),
        help="JAX formulations to time",
    )
    dw.add_argument("--steps", type=int, default=20, help="timed calls per formulation")
    dw.add_argument("--no_torch", action="store_true", help="leave out PyTorch's depthwise conv")
    comp = sub.add_parser("compile", help="compile time vs depth, unrolled vs scan")
    comp.add_argument("--depths", type=int, nargs="+", default=[3, 48], help="blocks in the deepest stage")
    comms = sub.add_parser("comms", help="gradient all-reduce volume per optimizer step (set JAX_NUM_CPU_DEVICES)")
    comms.add_argument("--model", default="convnext_atto", help="a variant name")
    comms.add_argument("--num_classes", type=int, default=1000, help="classifier outputs")
    comms.add_argument("--image_size", type=int, default=64, help="input resolution (px)")
    comms.add_argument("--batch_size", type=int, default=64, help="global batch")
    comms.add_argument("--accum", type=int, nargs="+", default=[1, 4], help="gradient accumulation steps to compare")
    fcmae.set_defaults(model="convnextv2_atto", image_size=128)
    memory = sub.add_parser(
        "memory",
        help="per-device memory of the train step under FSDP (XLA memory analysis; "
        "set JAX_NUM_CPU_DEVICES=8 to plan for 8 GPUs on a CPU)",
    )
    memory.add_argument("--model", default="convnextv2_huge", help="a variant name")
    memory.add_argument("--image_size", type=int, default=224, help="input resolution (px)")
    memory.add_argument("--batch_size", type=int, default=32, help="per device")
    memory.add_argument("--num_classes", type=int, default=1000, help="classifier outputs")
    memory.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"], help="compute precision")
    memory.add_argument("--remat", default="full", choices=["none", "full", "dots"], help="rematerialisation policy")
    memory.add_argument(
        "--scan",
        type=lambda s: s.lower() in ("1", "true", "yes"),
        default=True,
        help="scan over the blocks of a stage (true/false)",
    )
    memory.add_argument("--fsdp", type=int, nargs="+", default=[1, 8], help="fsdp sizes (the rest is data)")
    memory.add_argument("--budget_gib", type=float, default=24.0, help="memory of the GPU to plan for")
    memory.add_argument("--no_ema", action="store_true", help="leave the EMA copy of the weights out")
    data = sub.add_parser("data", help="input pipeline: ours vs torchvision DataLoader + timm transform")
    data.add_argument(
        "--source",
        default="imagenet-like",
        help="imagenet-like (real-photo JPEGs made in a temp dir), folder:/path or prepared:/path",
    )
    data.add_argument("--images", type=int, default=256, help="how many imagenet-like images to make")
    data.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8), help="scaling table up to this")
    data.add_argument(
        "--worker_counts",
        type=int,
        nargs="+",
        help="the scaling table's worker counts (default 1..--workers), e.g. 1 2 4 8 16",
    )
    data.add_argument("--batch_size", type=int, default=32, help="images per batch")
    data.add_argument("--image_size", type=int, default=224, help="output crop (px)")
    data.add_argument("--epochs", type=int, default=3, help="passes over the images per measurement")
    data.add_argument("--torch", action="store_true", help="also time torchvision DataLoader + timm transform")
    data.add_argument(
        "--pil_ops",
        action="store_true",
        help="also time our pipeline with Pillow's resize/warp instead of the native ones (same pixels)",
    )
    data.add_argument(
        "--prepared_max_size",
        type=int,
        default=0,
        help="also prepare the images at this size and time that (ours; torch on the same files)",
    )
    for p in (train, infer, fcmae, dw, comp, comms, memory, data):
        p.add_argument("--json", help="also write the rows and environment to this JSON file")
    args = parser.parse_args(argv)
    _check(args)
    rows = {
        "train": _train,
        "infer": _infer,
        "fcmae": _fcmae,
        "dwconv": _dwconv,
        "compile": _compile,
        "comms": _comms,
        "memory": _memory,
        "data": _data,
    }[args.command](args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": " ".join(sys.argv), "environment": _environment(), "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
