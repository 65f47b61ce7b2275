"""python -m convnext_jax.compare --config FILE.py[:arg] --workdir DIR [--seeds 0,1,2] [--config.k=v ...]

The same recipe trained by convnext_jax and by PyTorch + timm, seed by seed (interleaved, so the
machine's drift hits both), each (framework, seed) a sub-run in its own process (DIR/jax/seed_N,
DIR/pytorch/seed_N). With --batches shared (default) both sides see the same augmented batches in
the same order (one of our pipelines, seeded); --batches native gives PyTorch a DataLoader with
timm's transforms. With --init shared (default) both start from the same weights; mixup, cutmix,
random erasing and drop path draw their own randomness on each side. PyTorch runs on CUDA when
available (AMP in the config's dtype, channels_last, --torch_compile), JAX on its default
backend; on CPU both in float32. Re-running continues with the sub-runs not finished; a finished
comparison only rewrites its report. DIR/report.md, report.html, curves.png, throughput.png,
results.json: accuracy mean ± std, the difference with its 95% CI and Welch's t, img/s, memory.

--parity_steps N: the recipe without stochastic parts, shared init and batches, N steps on each
side; the per-step train losses and their largest relative difference (parity.png).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
from typing import Any

from absl import app, flags
from ml_collections import config_flags

from convnext_jax.cli import config_flags_parser, loaded_config, reports_user_errors
from convnext_jax.compare.recipe import parity_config, seeds_of, unsupported
from convnext_jax.errors import ConfigError
from convnext_jax.sweep.space import apply_params

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the comparison: sub-runs and the report.")
_SEEDS = flags.DEFINE_list(
    "seeds", ["0"], "Seeds, comma-separated (--seeds 0,1,2); every seed runs on both sides, interleaved."
)
_INIT = flags.DEFINE_enum(
    "init", "shared", ["shared", "independent"], "shared: timm starts from the JAX init; independent: from its own."
)
_BATCHES = flags.DEFINE_enum(
    "batches",
    "shared",
    ["shared", "native"],
    "shared: one of our pipelines feeds both sides the same batches; native: PyTorch reads with a DataLoader "
    "and timm's transforms (the end-to-end comparison).",
)
_TORCH_COMPILE = flags.DEFINE_bool("torch_compile", False, "torch.compile the PyTorch model.")
_PARITY_STEPS = flags.DEFINE_integer("parity_steps", 0, "> 0: the step-for-step parity check over this many steps.")
FRAMEWORKS = ("jax", "pytorch")
SETTINGS_FILE = "compare.json"


def _require_torch() -> Any:
    try:
        import timm  # noqa: F401
        import torch
    except ImportError as e:
        raise ConfigError(
            f"the PyTorch side needs torch and timm ({e.name} is missing): pip install -e '.[torch]'"
        ) from e
    return torch


def _recipe(config: Any, parity_steps: int, cuda: bool) -> tuple[Any, list[str]]:
    """The config both sides train, and notes on what was changed."""
    from convnext_jax.train.config import validate
    from convnext_jax.train.setup import data_sources, steps_per_epoch_of

    problems = unsupported(config)
    if problems:
        raise ConfigError(
            "the PyTorch side cannot reproduce: " + "; ".join(problems) + ". Change these keys to compare."
        )
    notes = []
    if not cuda and config.model.dtype != "float32":
        config = apply_params(config, {"model.dtype": "float32"})
        notes.append("no CUDA device: both sides train in float32")
    validate(config)
    if parity_steps:
        steps_per_epoch = steps_per_epoch_of(config, len(data_sources(config)[0]))
        config = parity_config(config, parity_steps, steps_per_epoch)
        notes.append(f"parity check: {parity_steps} steps without drop path, dropout, mixup, erasing or EMA")
    return config, notes


class _Child:
    """The sub-run in progress: SIGTERM to the comparison goes to it (it saves), then we stop."""

    proc: subprocess.Popen | None = None

    @classmethod
    def run(cls, argv: list[str], env: dict[str, str]) -> int:
        cls.proc = subprocess.Popen(argv, env=env)
        try:
            return cls.proc.wait()
        except KeyboardInterrupt:  # the child got the Ctrl-C too: let it save and finish
            cls.proc.wait()
            raise
        finally:
            cls.proc = None

    @classmethod
    def forward(cls, signum: int, frame: Any) -> None:
        if cls.proc is not None:
            cls.proc.send_signal(signum)


def _sub_run(workdir: str, framework: str, seed: int, config: Any, extra: list[str]) -> dict[str, Any]:
    """Run (or continue) one sub-run; its summary and metric records."""
    from convnext_jax.train.metrics import read_metrics
    from convnext_jax.train.workdir import RunDir

    path = os.path.join(workdir, framework, f"seed_{seed}")
    run = RunDir(path)
    summary_file = os.path.join(path, "summary.json")
    if not os.path.isfile(summary_file):
        if not run.exists:
            run.write_config(config)
        if framework == "jax":
            argv = [sys.executable, "-m", "convnext_jax.main", "--workdir", path]
        else:
            argv = [sys.executable, "-m", "convnext_jax.compare.torch_side", "--workdir", path, *extra]
        print(f"== {framework}, seed {seed}: {path}", flush=True)
        code = _Child.run(argv, dict(os.environ))
        if code:
            raise SystemExit(
                code
                if code in (75, 130)
                else f"the {framework} sub-run for seed {seed} failed (exit {code}); its output is above, its files in {path}"
            )
    with open(summary_file) as f:
        summary = json.load(f)
    return {"seed": seed, "summary": summary, "records": read_metrics(path)}


def _parity(runs: dict[str, list[dict[str, Any]]], steps: int) -> dict[str, Any]:
    losses = {f: [r["train_loss"] for r in runs[f][0]["records"] if "train_loss" in r][:steps] for f in FRAMEWORKS}
    worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses["jax"], losses["pytorch"]))
    return {**losses, "max_relative_difference": worst}


@reports_user_errors
def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments {argv[1:]} (python -m convnext_jax.compare --help)")
    if not _WORKDIR.value:
        raise ConfigError("--workdir is required: the directory of the comparison (e.g. --workdir runs/compare)")
    config = loaded_config(_CONFIG)
    if config is None:
        raise ConfigError(
            "--config is required: the recipe both sides train (e.g. --config configs/embedded_digits.py)"
        )
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    torch = _require_torch()
    cuda = torch.cuda.is_available()
    config, notes = _recipe(config, _PARITY_STEPS.value, cuda)
    seeds = seeds_of(_SEEDS.value)
    if _PARITY_STEPS.value:
        seeds = seeds[:1]
        if _BATCHES.value == "native" or _INIT.value == "independent":
            raise ConfigError("--parity_steps compares step for step: it needs --batches shared and --init shared")
    workdir = os.path.abspath(_WORKDIR.value)
    settings = {
        "config": json.loads(config.to_json_best_effort()),
        "init": _INIT.value,
        "batches": _BATCHES.value,
        "torch_compile": _TORCH_COMPILE.value,
        "parity_steps": _PARITY_STEPS.value,
    }
    settings_path = os.path.join(workdir, SETTINGS_FILE)
    if os.path.isfile(settings_path):
        with open(settings_path) as f:
            stored = json.load(f)
        if stored != settings:
            changed = sorted(k for k in settings if stored.get(k) != settings[k])
            raise ConfigError(
                f"{workdir} holds a comparison with other settings ({', '.join(changed)}): use another --workdir"
            )
    else:
        os.makedirs(workdir, exist_ok=True)
        with open(settings_path, "w") as f:
            json.dump(settings, f, indent=2)
    for note in notes:
        print(f"note: {note}", flush=True)
    signal.signal(signal.SIGTERM, _Child.forward)
    extra = ["--init", _INIT.value, "--batches", _BATCHES.value] + (["--torch_compile"] if _TORCH_COMPILE.value else [])
    runs: dict[str, list[dict[str, Any]]] = {f: [] for f in FRAMEWORKS}
    try:
        for seed in seeds:
            seeded = apply_params(config, {"seed": seed})
            runs["jax"].append(_sub_run(workdir, "jax", seed, seeded, []))
            devices = ["--jax_devices", str(runs["jax"][-1]["summary"].get("devices", 1))]
            runs["pytorch"].append(_sub_run(workdir, "pytorch", seed, seeded, extra + devices))
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue with the sub-runs not finished", file=sys.stderr)
        sys.exit(130)
    from convnext_jax.compare.report import write_report

    torch_summary = runs["pytorch"][0]["summary"]
    meta = {
        "config": _config_name(),
        "model": f"{config.model.name} {tuple(config.model.get('depths') or ())} {tuple(config.model.get('dims') or ())}".strip(),
        "recipe": f"{config.num_epochs} epochs, batch {config.batch_size}, {config.data.image_size} px, {config.model.dtype} (JAX)",
        "seeds": seeds,
        "init": _INIT.value,
        "batches": _BATCHES.value,
        "jax": f"jax {importlib.metadata.version('jax')}, flax {importlib.metadata.version('flax')}, "
        f"{runs['jax'][0]['summary'].get('devices')} device(s)",
        "pytorch": f"torch {torch_summary['versions']['torch']}, timm {torch_summary['versions']['timm']}, "
        f"{torch_summary['device']}, {torch_summary['precision']}"
        + (", torch.compile" if _TORCH_COMPILE.value else ""),
        **({"notes": "; ".join(notes)} if notes else {}),
    }
    parity = _parity(runs, _PARITY_STEPS.value) if _PARITY_STEPS.value else None
    result = write_report(workdir, runs, meta, parity)
    print(f"{result['headline']}\nreport: {workdir}/report.md (and report.html, curves.png, throughput.png)")
    if parity:
        print(
            f"parity: max relative difference of the train loss over {_PARITY_STEPS.value} steps {parity['max_relative_difference']:.2e}"
        )


def _config_name() -> str:
    return config_flags.get_config_filename(flags.FLAGS["config"])


def _schema() -> dict:
    from convnext_jax.train.config import SCHEMA

    return SCHEMA


def run() -> None:
    app.run(main, flags_parser=config_flags_parser(_schema, "python -m convnext_jax.compare"))


if __name__ == "__main__":
    run()
