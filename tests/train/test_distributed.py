"""A 2-process localhost run through jax.distributed (CPU collectives), 2 devices per process."""

import json
import os
import socket
import subprocess
import sys

from convnext_jax.train.metrics import read_metrics

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _slurm_job_id() -> int:
    """A job id whose coordinator port (JAX derives it from the id, in 61440..65535) is free."""
    for job_id in range(4096):
        with socket.socket() as s:
            try:
                s.bind(("localhost", 61440 + job_id))
                return job_id + 4096 * 7
            except OSError:
                continue
    raise RuntimeError("no free port for the simulated SLURM job")


def _launch(workdir, port, *extra, slurm=False):
    """Two processes joined by explicit flags, or (slurm=True) by the variables `srun` sets."""
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="2", JAX_PLATFORMS="cpu")
    job_id = _slurm_job_id() if slurm else None

    def process(i):
        if slurm:
            return [], dict(
                env,
                SLURM_JOB_ID=str(job_id),
                SLURM_STEP_NODELIST="localhost",
                SLURM_NTASKS="2",
                SLURM_PROCID=str(i),
                SLURM_LOCALID=str(i),
                SLURM_STEP_NUM_NODES="1",
            )
        return [f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"], env

    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "convnext_jax.main",
                "--config",
                "configs/embedded_digits.py",
                "--workdir",
                str(workdir),
                "--config.num_epochs=1",
                "--config.log_every=5",
                *extra,
                "--config.model.dims=(16, 24, 32, 48)",
                *process(i)[0],
            ],
            env=process(i)[1],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    return outputs


def _summary(output: str) -> dict:
    return json.loads(output[output.rfind("\n{") + 1 :])  # the JSON summary is printed last


def _no_summary(output: str) -> None:
    """Processes other than 0 print no summary (srun merges every task's output into one file)."""
    assert "final_val_top1" not in output and "preempted (" not in output, output[-2000:]


def test_two_processes_train_evaluate_and_resume(tmp_path):
    outputs = _launch(tmp_path, _free_port())
    first = _summary(outputs[0])
    _no_summary(outputs[1])
    assert first["processes"] == 2 and first["devices"] == 4
    # every val image counted once although each process read half of them: globally reduced
    assert first["final_val_count"] == 360 and first["best_val_top1"] > 0.3
    assert json.loads((tmp_path / "summary.json").read_text())["final_val_top1"] == first["final_val_top1"]
    steps = [r["step"] for r in read_metrics(str(tmp_path)) if "train_loss" in r]
    assert steps == [5, 10, 15, 20, 22]  # one writer (process 0), no duplicated lines
    data = sorted(os.listdir(tmp_path / "checkpoints" / "22" / "data"))
    assert data == ["commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"] or [
        f for f in data if f.startswith("process_")
    ] == ["process_0-of-2.json", "process_1-of-2.json"]
    again = _launch(tmp_path, _free_port())  # finished: reported, not retrained
    assert _summary(again[0])["final_val_top1"] == first["final_val_top1"]
    _no_summary(again[1])
    # restores state + both iterators; under a (simulated) SLURM step the processes find each other without flags
    outputs = _launch(tmp_path, None, "--config.num_epochs=2", "--extend", slurm=True)
    assert "resumed from step 22/44" in outputs[0]
    resumed = _summary(outputs[0])
    _no_summary(outputs[1])
    assert resumed["processes"] == 2 and resumed["steps"] == 44
    assert resumed["best_val_top1"] >= first["best_val_top1"]  # the best over both runs' epochs
    steps = [r["step"] for r in read_metrics(str(tmp_path)) if "train_loss" in r]
    assert steps == [5, 10, 15, 20, 22, 25, 30, 35, 40, 44]


def test_a_signal_to_one_process_stops_both_at_the_same_saved_step(tmp_path):
    """SIGUSR1 to process 1 only: JAX's preemption sync makes both stop after the same step, save
    it once and exit with 75."""
    import signal
    import time

    env = dict(os.environ, JAX_NUM_CPU_DEVICES="2", JAX_PLATFORMS="cpu")
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "convnext_jax.main",
                "--config",
                "configs/embedded_digits.py",
                "--workdir",
                str(tmp_path),
                "--config.num_epochs=3",
                "--config.log_every=5",
                "--config.model.dims=(16, 24, 32, 48)",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.time() + 300
    while not (tmp_path / "metrics.jsonl").exists() or not read_metrics(str(tmp_path)):
        assert time.time() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.1)
    procs[1].send_signal(signal.SIGUSR1)
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [75, 75], outputs[0][-2000:] + outputs[1][-2000:]
    step = int(outputs[0].split("saved a checkpoint at step ")[1].split(";")[0])  # process 0 says it
    _no_summary(outputs[1])
    assert 5 <= step < 66
    assert os.listdir(tmp_path / "checkpoints") == [str(step)]  # one save, at the step both stopped after
