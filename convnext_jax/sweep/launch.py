"""Start a study's workers: in this process, or as subprocesses (one per GPU group, or N on CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import ml_collections

from convnext_jax.sweep.study import create_study, run_worker


def worker_env(index: int, gpus: Sequence[str], gpus_per_worker: int) -> dict[str, str]:
    """The environment of worker `index`: its own CUDA_VISIBLE_DEVICES slice when GPUs are given."""
    env = dict(os.environ)
    if gpus:
        group = gpus[index * gpus_per_worker : (index + 1) * gpus_per_worker]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(group)
    return env


def run_study(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    workers: int = 1,
    gpus: Sequence[str] = (),
    gpus_per_worker: int = 1,
    report: bool = True,
) -> dict[str, Any]:
    """Create the study, run `workers` workers until no trial is left, then write the report.

    With `gpus` (e.g. ["0", "1", "2", "3"]), `workers` defaults to len(gpus) // gpus_per_worker
    and each worker sees only its own GPUs. More workers can join from other machines with
    `python -m convnext_jax.sweep worker --workdir DIR` when the storage is a shared database.
    """
    create_study(config, workdir)
    if gpus:
        workers = max(workers if workers > 1 else len(gpus) // gpus_per_worker, 1)
        if workers * gpus_per_worker > len(gpus):
            raise ValueError(
                f"{workers} workers x {gpus_per_worker} GPUs need {workers * gpus_per_worker} GPUs, "
                f"got {len(gpus)} ({','.join(gpus)})"
            )
    if workers <= 1 and not gpus:
        run_worker(workdir)
        failed: list[int] = []
    else:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "convnext_jax.sweep", "worker", "--workdir", workdir, f"--worker_index={i}"],
                env=worker_env(i, gpus, gpus_per_worker),
            )
            for i in range(workers)
        ]
        failed = [i for i, p in enumerate(procs) if p.wait() != 0]
    result: dict[str, Any] = {"failed_workers": failed}
    if report:
        from convnext_jax.sweep.report import write_report

        result["report"] = write_report(workdir)
    return result
