"""Train or evaluate: python -m convnext_jax.main --workdir DIR [--config FILE.py[:arg]] [--config.key=value ...]

  --mode train (default)  train in DIR; re-running resumes from the latest checkpoint, a finished
                          run is reported, not retrained (--extend with a larger num_epochs trains on)
  --mode eval             the latest checkpoint of DIR on the val split, with the config the run was
                          trained with (config.json in DIR; --config.key=value overrides on top)
  --show_config           every config key with its value, default and meaning, then exit

Without --config, a workdir that holds a run uses that run's config.json. Under srun (SLURM) or
mpirun the processes join one job by themselves. SIGTERM or SIGUSR1 saves a checkpoint and exits
with 75; Ctrl-C does the same and exits with 130 (run the same command again to resume).
"""

from __future__ import annotations

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from convnext_jax.cli import config_flags_parser, loaded_config, reports_user_errors
from convnext_jax.errors import ConfigError

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Python config file: get_config(arg) -> ConfigDict (configs/*.py); optional when --workdir holds a run.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory of the run: config.json, checkpoints, metrics.jsonl, summary.json."
)
_MODE = flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "eval"],
    "train (resumes automatically) or eval (a checkpoint "
    "of --workdir on the val split, with the run's config). Sweeps: python -m "
    "convnext_jax.sweep.",
)
_EXTEND = flags.DEFINE_bool("extend", False, "train a finished (or running) run longer: num_epochs may grow.")
_SHOW_CONFIG = flags.DEFINE_bool(
    "show_config", False, "print every config key with its value, default and meaning, then exit."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0 for multi-host runs "
    "(or set JAX_COORDINATOR_ADDRESS); with --num_processes and --process_id.",
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-host run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")


def resolve_config(workdir: str, mode: str):
    """The config of this command: the --config file (+ overrides), or the workdir's run config."""
    from convnext_jax.train.config import run_keys
    from convnext_jax.train.run import eval_config
    from convnext_jax.train.workdir import RunDir, differing

    run = RunDir(workdir)
    given = loaded_config(_CONFIG)
    if given is None:
        if not run.exists:
            raise ConfigError(
                f"--config is needed: {run.path} holds no run yet (e.g. --config configs/embedded_digits.py)"
            )
        return run.stored_config()
    if mode != "eval":
        return given
    stored = run.stored_config()
    overrides = config_flags.get_override_values(flags.FLAGS["config"])
    model_keys = [k for k in run_keys() if k.startswith("model.") and k not in overrides and k != "model.dtype"]
    changed = differing(stored, given, model_keys)
    if changed:
        raise ConfigError(
            f"--config describes another model than the run in {run.path} was trained with: "
            + "; ".join(changed)
            + ". Omit --config to evaluate with the run's own config.json."
        )
    return eval_config(stored, overrides)


@reports_user_errors
def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ConfigError(
            f"unexpected arguments {argv[1:]}: flags are --name=value (python -m convnext_jax.main --help)"
        )
    if not _WORKDIR.value and not _SHOW_CONFIG.value:
        raise ConfigError("--workdir is required: the directory of the run (e.g. --workdir runs/digits)")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax/grain INFO lines would drown the progress
    if _SHOW_CONFIG.value:
        from convnext_jax.train.config import describe

        config = loaded_config(_CONFIG) if _WORKDIR.value is None else resolve_config(_WORKDIR.value, _MODE.value)
        print(describe(config))
        return
    from convnext_jax.train.cluster import start_distributed
    from convnext_jax.train.preemption import hold_early_warnings

    hold_early_warnings()
    start_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    config = resolve_config(_WORKDIR.value, _MODE.value)
    if _MODE.value == "eval":
        from convnext_jax.train.run import evaluate_checkpoint

        _say(json.dumps(evaluate_checkpoint(config, _WORKDIR.value), indent=2))
        return
    from convnext_jax.train.preemption import Preempted
    from convnext_jax.train.run import train_and_evaluate

    try:
        summary = train_and_evaluate(config, _WORKDIR.value, extend=_EXTEND.value)
    except Preempted as e:
        _say(str(e))
        sys.exit(e.exit_code)
    _say(json.dumps(summary, indent=2))


def _say(text: str) -> None:
    """Print on process 0 only (every process of a multi-process job returns the same result)."""
    import jax

    if jax.process_index() == 0:
        print(text, flush=True)


def _schema() -> dict:
    from convnext_jax.train.config import SCHEMA

    return SCHEMA


def run() -> None:
    app.run(main, flags_parser=config_flags_parser(_schema, "python -m convnext_jax.main"))


if __name__ == "__main__":
    run()
