"""Interleaved A/B of JAX train (or inference) steps that need separate processes.

`python -m convnext_jax.bench train` times its contenders in one process, which cannot vary
what is fixed per process: XLA flags, environment variables, or code from another checkout.
Here every variant runs in its own worker process; all workers build and compile first, then
take turns (one round = `--steps` calls of each variant), so machine-speed drift hits every
variant alike. Medians and minima over rounds are printed as a markdown table.

    python scripts/ab_processes.py --model convnext_atto --image_size 64 --batch_size 32 \\
        --variant fp32: --variant bf16:dtype=bfloat16 --variant "xla:norm_impl=xla;gelu_impl=xla" \\
        --variant vw512:XLA_FLAGS=--xla_cpu_prefer_vector_width=512

A variant is NAME:KEY=VALUE;...; UPPERCASE keys are environment variables of the worker
(SRC=/path/to/checkout runs the convnext_jax found there), lowercase keys are model options
(ConvNeXtConfig fields; values are Python literals or plain strings).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np


def parse_variant(text: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """'name:KEY=v;key=v' -> (name, environment, model options)."""
    name, sep, spec = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"variant {text!r}: expected NAME:KEY=VALUE;... (NAME: for defaults)")
    env: dict[str, str] = {}
    options: dict[str, Any] = {}
    for item in filter(None, spec.split(";")):
        key, eq, value = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"variant {text!r}: {item!r} is not KEY=VALUE")
        if key.isupper():
            env[key] = value
        else:
            try:
                options[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                options[key] = value
    return name, env, options


def worker(spec: dict[str, Any]) -> None:
    """Build one variant, say 'ready', then time `n` calls per line read from stdin."""
    if spec.get("src"):  # run another checkout's package, even over an editable install
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path.insert(0, spec["src"])
    from convnext_jax.bench.jax_step import prepare_jax_inference, prepare_jax_train_step

    prepare = prepare_jax_train_step if spec["mode"] == "train" else prepare_jax_inference
    run = prepare(spec["model"], batch_size=spec["batch_size"], image_size=spec["image_size"], **spec["options"]).run
    for _ in range(spec["warmup"]):
        run()
    print("ready", flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        print(json.dumps(float(np.median(times))), flush=True)


def main(argv: list[str] | None = None) -> int:
    from convnext_jax.cli import ArgumentParser  # here, not at the top: a worker may import another checkout

    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", type=parse_variant, required=True)
    parser.add_argument("--mode", choices=["train", "infer"], default="train")
    parser.add_argument("--model", default="convnext_atto")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [name for name, _, _ in args.variant]
    if len(set(names)) != len(names):
        parser.error(f"variant names must be unique, got {names}")

    workers = {}
    for name, env, options in args.variant:
        spec = {
            "mode": args.mode,
            "model": args.model,
            "batch_size": args.batch_size,
            "image_size": args.image_size,
            "warmup": args.warmup,
            "options": options,
            "src": env.pop("SRC", ""),
        }
        workers[name] = subprocess.Popen(
            [sys.executable, __file__, "--variant", "w:", "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
    try:
        for name, proc in workers.items():
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit(f"variant {name!r} failed to build (its error is above)")
        seconds: dict[str, list[float]] = {name: [] for name in workers}
        for _ in range(args.rounds):
            for name, proc in workers.items():
                proc.stdin.write(f"{args.steps}\n")
                proc.stdin.flush()
                seconds[name].append(json.loads(proc.stdout.readline()))
    finally:
        for proc in workers.values():
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=60)
    print(
        f"\n{args.model} {args.image_size}px batch {args.batch_size}, {args.mode} step, "
        f"{args.rounds} interleaved rounds x {args.steps} calls, one process per variant\n"
    )
    print("| variant | step_ms (median) | min_ms | img_per_s |\n|---|---|---|---|")
    for name, values in seconds.items():
        median = float(np.median(values))
        print(f"| {name} | {median * 1e3:.1f} | {min(values) * 1e3:.1f} | {args.batch_size / median:.1f} |")
    return 0


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker(json.loads(sys.argv[sys.argv.index("--worker") + 1]))
    else:
        sys.exit(main())
