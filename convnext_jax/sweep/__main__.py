"""python -m convnext_jax.sweep {run,worker,report} --workdir DIR [--config FILE.py[:arg] --config.sweep.k=v ...]

  run     validate the study config, create the study (SQLite in DIR, or sweep.storage), queue the
          grid, run --workers workers (or one per --gpus group), then write the report
  worker  join the study in DIR and run trials until none is left (any machine sharing the storage)
  report  DIR/report/: report.md, report.html, points.json and PNG plots

`--show_config` (with run) lists every key of the study config, its value and meaning.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from convnext_jax.cli import config_flags_parser, loaded_config, reports_user_errors
from convnext_jax.errors import ConfigError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Study config: a training config plus a `sweep` section (configs/sweeps/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory: sweep.json, study.db, trials/, report/.")
_WORKERS = flags.DEFINE_integer("workers", 1, "Worker processes for `run` (1: in this process).")
_GPUS = flags.DEFINE_list("gpus", [], "GPU ids to split over workers (CUDA_VISIBLE_DEVICES per worker).")
_GPUS_PER_WORKER = flags.DEFINE_integer("gpus_per_worker", 1, "GPUs each worker gets (data-parallel inside a trial).")
_WORKER_INDEX = flags.DEFINE_integer("worker_index", 0, "This worker's index (seeds its sampler, labels its output).")
_SHOW_CONFIG = flags.DEFINE_bool(
    "show_config", False, "print every key of the study config with its value, default and meaning, then exit."
)
COMMANDS = {
    "run": "validate the study config, create the study (SQLite in --workdir, or sweep.storage), queue the grid, "
    "run --workers workers (or one per --gpus group), then write the report. Needs --config (e.g. "
    "configs/sweeps/lr.py:tiny) and --workdir; --show_config lists every key of the study config.",
    "worker": "join the study in --workdir and run trials until none is left (from any machine that shares "
    "the study's storage: PostgreSQL or a journal file on a shared disk). Needs --workdir.",
    "report": "write --workdir/report/: report.md, report.html, points.json and the PNG plots, from the trials "
    "so far (a study still running can be reported). Needs --workdir.",
}


def _schema() -> dict:
    from convnext_jax.sweep.spec import SCHEMA as SWEEP
    from convnext_jax.train.config import SCHEMA as TRAIN

    return {**TRAIN, "sweep": SWEEP}


@reports_user_errors
def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise ConfigError(
            f"expected one command of {', '.join(COMMANDS)}, got {' '.join(argv[1:]) or 'none'} "
            "(python -m convnext_jax.sweep run --config configs/sweeps/lr.py:tiny --workdir runs/lr)"
        )
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    command, workdir = argv[1], _WORKDIR.value
    config = loaded_config(_CONFIG)
    if _SHOW_CONFIG.value:
        from convnext_jax import schema

        print(schema.describe(_schema(), config))
        return
    if not workdir:
        raise ConfigError("--workdir is required: the study's directory (e.g. --workdir runs/lr)")
    if command == "run":
        if config is None:
            raise ConfigError("run needs --config (a study config, e.g. configs/sweeps/lr.py:tiny)")
        from convnext_jax.sweep.launch import run_study

        result = run_study(
            config, workdir, workers=_WORKERS.value, gpus=_GPUS.value, gpus_per_worker=_GPUS_PER_WORKER.value
        )
        if "report" in result:
            print(f"{result['report']['headline']}\nreport: {workdir}/report/report.md")
        if result["failed_workers"]:
            sys.exit(f"workers {result['failed_workers']} exited with an error (see their output above)")
    elif command == "worker":
        from convnext_jax.sweep.study import run_worker

        print(json.dumps({"trials_run": run_worker(workdir, _WORKER_INDEX.value)}))
    else:
        from convnext_jax.sweep.report import write_report

        summary = write_report(workdir)
        print(
            f"{summary['headline']}\nreport: {workdir}/report/report.md ({len(summary['points'])} points, plots: "
            f"{', '.join(summary['plots'])})"
        )


if __name__ == "__main__":
    app.run(main, flags_parser=config_flags_parser(_schema, "python -m convnext_jax.sweep", COMMANDS))
