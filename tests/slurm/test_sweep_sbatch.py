"""scripts/slurm/sweep.sbatch as a real job array on a shared study (a journal file, a PostgreSQL
database): array task 1's worker is SIGKILLed mid-trial; task 0 finds the dead worker's trial by its stale
heartbeat, re-runs it from its last checkpoint, and every (point, seed) completes."""

import json
import os
import signal
import time
import warnings

import optuna

from convnext_jax.sweep.spec import split_config
from convnext_jax.sweep.study import load_sweep, open_storage
from convnext_jax.train.metrics import read_metrics

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STUDY = """
from configs.common import tiny_study_base
from convnext_jax.sweep import with_sweep


def get_config(arg=None):
    config = tiny_study_base()
    config.num_epochs = 4
    return with_sweep(config, space="optim.lr: grid(3e-3, 2e-3)", seeds=1, heartbeat_s=1, grace_s=4)
"""


def _array_task_pid(job: str, task: int) -> int | None:
    """The worker process of array task `task` (sweep.sbatch execs python, so it is the batch step)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if (
            f"SLURM_ARRAY_JOB_ID={job}".encode() in env
            and f"SLURM_ARRAY_TASK_ID={task}".encode() in env
            and b"convnext_jax.sweep" in cmdline
        ):
            return int(pid)
    return None


def _trials(workdir):
    spec, _ = split_config(load_sweep(workdir)[0])
    return optuna.load_study(study_name="study", storage=open_storage(spec, workdir)).trials


def test_an_array_task_killed_mid_trial_and_every_point_completes(slurm, tmp_path, storage):
    config_file = tmp_path / "study.py"
    config_file.write_text(STUDY)
    workdir = tmp_path / "study"
    job = (
        slurm.run(
            "sbatch",
            "--parsable",
            "--array=0-1",
            f"--chdir={ROOT}",
            f"--output={tmp_path}/%a.out",
            "--export=ALL,JAX_PLATFORMS=cpu",
            "scripts/slurm/sweep.sbatch",
            str(config_file),
            str(workdir),
            storage,
        )
        .stdout.strip()
        .split(";")[0]
    )

    deadline = time.monotonic() + 240
    victim = None
    while victim is None:  # task 1 runs a trial that has saved its first epoch
        assert time.monotonic() < deadline, [(tmp_path / f"{i}.out").read_text()[-1500:] for i in (0, 1)]
        pid = _array_task_pid(job, 1)
        if pid and (workdir / "sweep.json").exists():
            for trial in _trials(str(workdir)):
                mine = trial.user_attrs.get("worker", "").endswith(f":{pid}") and trial.state.name == "RUNNING"
                if mine and (workdir / trial.user_attrs["workdir"] / "checkpoints" / "22").is_dir():
                    victim = trial
        time.sleep(0.2)
    os.kill(_array_task_pid(job, 1), signal.SIGKILL)  # the worker dies (OOM killer, a crashed node)
    assert slurm.wait_state(f"{job}_0", ("COMPLETED", "FAILED", "CANCELLED")) == "COMPLETED", (
        tmp_path / "0.out"
    ).read_text()[-3000:]
    assert slurm.wait_state(f"{job}_1", ("CANCELLED", "FAILED", "COMPLETED")) == "FAILED"

    trials = _trials(str(workdir))
    assert {t.number: t.state.name for t in trials}[victim.number] == "FAIL"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = [t for t in trials if optuna.storages.RetryFailedTrialCallback.retried_trial_number(t) == victim.number]
    assert len(retry) == 1 and retry[0].user_attrs["workdir"] == victim.user_attrs["workdir"]  # resumed in place
    done = {(t.params["optim.lr"], t.user_attrs["seed"]) for t in trials if t.state.name == "COMPLETE"}
    assert done == {(3e-3, 0), (2e-3, 0)}  # every (point, seed)
    epochs = [r["epoch"] for r in read_metrics(str(workdir / victim.user_attrs["workdir"])) if "epoch" in r]
    assert epochs == [1, 2, 3, 4]  # from the killed task, then after the resume; nothing repeated
    assert json.loads((workdir / "report" / "points.json").read_text())  # task 0 wrote the report
