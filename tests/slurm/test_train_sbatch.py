"""scripts/slurm/train.sbatch on a real SLURM cluster: two tasks are one JAX job; the time-limit
warning saves, requeues once and resumes to COMPLETED; scancel saves and cancels, no requeue;
`scontrol requeue` saves and SLURM's requeue resumes; a real --time limit with its warning signal
saves before the kill."""

import json
import os
import re
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY = ["--config.model.depths=(1, 1, 1, 1)", "--config.model.dims=(16, 24, 32, 48)", "--config.log_every=1"]


def _submit(slurm, tmp_path, name, *overrides, sbatch=()):
    out = tmp_path / f"{name}.out"
    result = slurm.run(
        "sbatch",
        "--parsable",
        "--ntasks-per-node=2",
        f"--chdir={ROOT}",
        f"--output={out}",
        f"--job-name={name}",
        "--export=ALL,JAX_PLATFORMS=cpu",
        *sbatch,
        "scripts/slurm/train.sbatch",
        "configs/embedded_digits.py",
        str(tmp_path / name),
        *TINY,
        *overrides,
    )
    return result.stdout.strip().split(";")[0], out


def _wait_for_line(path, pattern, timeout=240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if re.search(pattern, text):
            return text
        time.sleep(0.3)
    raise TimeoutError(f"{pattern!r} never appeared in {path}: {text[-2000:]}")


def _release_when_held(slurm, job):
    """A requeued job waits ~2 min (EligibleTime): start it now, once slurmd has cleaned up."""
    deadline = time.monotonic() + 60
    while slurm.job_field(job, "Reason") != "BeginTime" and time.monotonic() < deadline:  # requeued and held
        time.sleep(0.5)
    time.sleep(3)  # released at once, slurmd may still be cleaning up the first run ("credential revoked")
    slurm.run("scontrol", "update", f"JobId={job}", "StartTime=now")


def test_time_limit_warning_saves_requeues_once_and_resumes(slurm, tmp_path):
    job, out = _submit(slurm, tmp_path, "warned", "--config.num_epochs=3")
    _wait_for_line(out, r"step 30/66")  # mid-epoch 2
    slurm.run("scancel", "--signal=USR1", "--batch", job)  # what --signal=B:USR1@N sends before the time limit
    text = _wait_for_line(out, r"requeueing job")
    saved = int(re.search(r"preempted \(SIGUSR1\): saved a checkpoint at step (\d+)", text).group(1))
    assert text.count("preempted (") == 1  # process 0 alone says it
    assert (tmp_path / "warned" / "checkpoints" / str(saved)).is_dir()
    _release_when_held(slurm, job)
    assert slurm.wait_state(job, ("COMPLETED", "FAILED", "CANCELLED")) == "COMPLETED"
    time.sleep(3)  # a finished job must not requeue itself again
    assert slurm.job_field(job, "JobState") == "COMPLETED" and slurm.job_field(job, "Restarts") == "1"
    text = out.read_text()
    assert f"resumed from step {saved}/66" in text
    summary = json.loads((tmp_path / "warned" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 2 and summary["finished"]
    assert text.count('"finished": true') == 1  # one summary, from process 0


def test_scancel_saves_and_cancels_without_requeue(slurm, tmp_path):
    job, out = _submit(slurm, tmp_path, "cancelled", "--config.num_epochs=3")
    _wait_for_line(out, r"step 30/66")
    slurm.run("scancel", job)
    assert slurm.wait_state(job, ("CANCELLED", "COMPLETED", "FAILED", "PENDING", "REQUEUED")) == "CANCELLED"
    text = _wait_for_line(out, r"preempted \(SIGTERM\): saved a checkpoint at step \d+")
    saved = int(re.search(r"saved a checkpoint at step (\d+)", text).group(1))
    assert 30 <= saved < 66 and (tmp_path / "cancelled" / "checkpoints" / str(saved)).is_dir()
    time.sleep(3)
    assert slurm.job_field(job, "JobState") == "CANCELLED" and slurm.job_field(job, "Restarts") == "0"
    assert "requeueing" not in out.read_text()


def test_scontrol_requeue_saves_and_slurm_resumes_the_job(slurm, tmp_path):
    job, out = _submit(slurm, tmp_path, "requeued", "--config.num_epochs=2")
    _wait_for_line(out, r"step 10/44")
    slurm.run("scontrol", "requeue", job)  # what an admin or a preempting job does: SIGTERM, then requeue
    text = _wait_for_line(out, r"preempted \(SIGTERM\): saved a checkpoint at step \d+")
    saved = int(re.search(r"saved a checkpoint at step (\d+)", text).group(1))
    _release_when_held(slurm, job)
    assert slurm.wait_state(job, ("COMPLETED", "FAILED", "CANCELLED")) == "COMPLETED"
    text = out.read_text()
    assert f"resumed from step {saved}/44" in text and "requeueing" not in text  # SLURM requeued it, not the script
    assert slurm.job_field(job, "Restarts") == "1"


def test_a_real_time_limit_warns_and_the_run_saves_before_the_kill(slurm, tmp_path):
    """--time=2 with --signal=B:USR1@90: slurmctld looks at time limits once a minute, so the warning
    comes 30-90 s after the start, 90-30 s before the kill; the run saves, the script requeues."""
    job, out = _submit(slurm, tmp_path, "limited", "--config.num_epochs=100", sbatch=("--time=2", "--signal=B:USR1@90"))
    text = _wait_for_line(out, r"requeueing job", timeout=150)
    saved = int(re.search(r"preempted \(SIGUSR1\): saved a checkpoint at step (\d+)", text).group(1))
    assert (tmp_path / "limited" / "checkpoints" / str(saved)).is_dir()
    assert "DUE TO TIME LIMIT" not in text  # saved and gone before SLURM's kill
    slurm.run("scancel", job)  # it would requeue itself at every time limit: that is its purpose
