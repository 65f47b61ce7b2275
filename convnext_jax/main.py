"""Entry point: python -m convnext_jax.main --config configs/FILE.py[:arg] --workdir DIR [--config.key=value ...]"""

from __future__ import annotations

import json
import os

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Python config file: get_config(arg) -> ConfigDict.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and summary.json.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sweep", "report"],
                          "train (resumes automatically), eval (the latest checkpoint of --workdir on the val split), "
                          "sweep (a study config: run its Optuna study in this process; `python -m "
                          "convnext_jax.sweep run --workers N` for more workers) or report (of the study in --workdir).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for multi-host runs "
                                   "(or set JAX_COORDINATOR_ADDRESS); with --num_processes and --process_id.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-host run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
flags.mark_flags_as_required(["workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax/grain INFO lines would drown the progress
    import jax

    if _COORDINATOR.value or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    from convnext_jax.train.loop import evaluate_checkpoint, train_and_evaluate

    if _CONFIG.value is None and _MODE.value != "report":
        raise app.UsageError(f"--mode {_MODE.value} needs --config (e.g. configs/embedded_digits.py)")
    if _MODE.value in ("sweep", "report"):
        from convnext_jax.sweep import run_study, write_report

        if _MODE.value == "sweep":
            run_study(_CONFIG.value, _WORKDIR.value)
        else:
            write_report(_WORKDIR.value)
        print(f"report: {_WORKDIR.value}/report/report.md")
        return
    if _MODE.value == "eval":
        print(json.dumps(evaluate_checkpoint(_CONFIG.value, _WORKDIR.value), indent=2))
        return
    os.makedirs(_WORKDIR.value, exist_ok=True)
    if jax.process_index() == 0:
        with open(os.path.join(_WORKDIR.value, "config.json"), "w") as f:
            f.write(_CONFIG.value.to_json_best_effort(indent=2))
    summary = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    app.run(main)
