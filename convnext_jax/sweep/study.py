"""Optuna studies over training configs: storage, study creation, the trial objective and workers.

Each trial is one (point, seed) training run in its own workdir (`WORKDIR/trials/NNNN`, with
the run's metrics.jsonl, summary.json and checkpoints). Grid points, and the repeated seeds of
a sampled point, are queued in the study (FIFO), so any number of workers on any number of
machines pull from one study. Workers beat a heartbeat; a worker that dies leaves a trial that
the next worker marks failed and re-queues, with the same workdir, so it resumes from its last
checkpoint and finished trials are never lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import logging
import os
import socket
import sys
import threading
import time
import warnings
from typing import Any

import jax
import ml_collections
import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from convnext_jax.errors import UserError
from convnext_jax.run_files import METRICS_FILE
from convnext_jax.schema import json_tuples
from convnext_jax.sweep.space import SearchSpaceError, apply_params, grid_points
from convnext_jax.sweep.spec import SweepSpec, split_config
from convnext_jax.train.metrics import read_metrics

log = logging.getLogger(__name__)
SWEEP_FILE = "sweep.json"


class StorageError(UserError, RuntimeError):
    """The study storage could not be opened."""


class StudyNotFoundError(UserError, FileNotFoundError):
    """The workdir holds no study (no sweep.json)."""


def storage_url(spec: SweepSpec, workdir: str) -> str:
    return spec.storage or f"sqlite:///{os.path.abspath(workdir)}/study.db"


def with_driver(url: str) -> str:
    """A postgresql:// URL names SQLAlchemy's default driver (psycopg2); use psycopg (3) when that is
    what is installed (the `postgres` extra). A missing driver is a StorageError naming the extra."""
    import importlib.util

    if not url.startswith(("postgresql://", "postgres://")):
        return url
    if importlib.util.find_spec("psycopg2") is not None:
        return url
    if importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    raise StorageError(
        f'the study storage {url!r} needs a PostgreSQL driver: pip install -e ".[postgres]" (psycopg), or psycopg2'
    )


JOURNAL_PREFIX = "journal:"


class JournalHeartbeatStorage(optuna.storages.JournalStorage, BaseHeartbeat):
    """Optuna's journal-file storage (one append-only file on a shared filesystem, no database
    server) with the heartbeats it lacks: each running trial's worker touches
    `FILE.heartbeats/<trial id>`; a running trial whose file is older than the grace period belongs
    to a dead worker and is failed and re-queued, as with RDBStorage. (The machines' clocks must
    agree to within the grace period, as NTP keeps them.)"""

    def __init__(self, path: str, *, heartbeat_interval: int, grace_period: int, stale_callback: Any):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        super().__init__(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
        self._beats = path + ".heartbeats"
        os.makedirs(self._beats, exist_ok=True)
        self._interval, self._grace, self._callback = heartbeat_interval, grace_period, stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        with open(os.path.join(self._beats, str(trial_id)), "w") as f:
            f.write(f"{time.time()}\n")

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale, now = [], time.time()
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = os.path.join(self._beats, str(trial._trial_id))
            if os.path.exists(beat) and now - os.path.getmtime(beat) > self._grace:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> Any:
        return self._callback


def open_storage(spec: SweepSpec, workdir: str) -> optuna.storages.BaseStorage:
    """The study's storage with heartbeats: an RDB storage (SQLite in the workdir by default, or any
    SQLAlchemy URL), or `journal:/shared/path/study.journal` (a file on a shared filesystem)."""
    url = storage_url(spec, workdir)
    if url.startswith(JOURNAL_PREFIX):
        path = url[len(JOURNAL_PREFIX) :].removeprefix("//")
        if not os.path.isabs(path):
            raise StorageError(
                f"the journal storage {url!r} needs an absolute path: journal:/shared/sweeps/study.journal"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=spec.max_retries)
            try:
                return JournalHeartbeatStorage(
                    path, heartbeat_interval=spec.heartbeat_s, grace_period=spec.grace_s, stale_callback=retry
                )
            except OSError as e:
                raise StorageError(f"cannot open the journal storage {path}: {e}") from e
    url = with_driver(url)
    engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=spec.max_retries)
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=spec.heartbeat_s,
                grace_period=spec.grace_s,
                heartbeat_stale_trial_callback=retry,
            )
        except Exception as e:  # sqlalchemy/driver errors: bad URL, unreachable server, missing directory
            raise StorageError(
                f"cannot open the study storage {url!r}: {type(e).__name__}: {e}. Use a SQLAlchemy URL "
                "such as sqlite:////abs/path/study.db or postgresql://user:pass@host/db (with its "
                "driver installed), or leave sweep.storage empty for a SQLite file in the workdir."
            ) from e


def _sampler(spec: SweepSpec, worker_index: int) -> optuna.samplers.BaseSampler:
    seed = spec.sampler_seed * 1000 + worker_index  # workers must not draw the same points
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)  # grid points are all queued; the sampler is unused


def _pruner(spec: SweepSpec, num_epochs: int) -> optuna.pruners.BasePruner:
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.pruner_startup_trials, n_warmup_steps=spec.pruner_warmup_epochs
        )
    if spec.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(num_epochs, 1), reduction_factor=3)
    return optuna.pruners.NopPruner()


def _spec_record(spec: SweepSpec) -> dict[str, Any]:
    return {
        "space": [(d.key, d.kind, list(d.args)) for d in spec.dims],
        "sampler": spec.sampler,
        "objective": spec.objective,
        "seeds": spec.seeds,
    }


def create_study(config: ml_collections.ConfigDict, workdir: str) -> optuna.Study:
    """Validate the study config, create (or reopen) its study and queue the grid. Writes
    WORKDIR/sweep.json, which workers and the report read."""
    spec, train = split_config(config, check_paths=True)
    os.makedirs(workdir, exist_ok=True)
    storage = open_storage(spec, workdir)
    study = optuna.create_study(
        study_name=spec.study_name,
        storage=storage,
        direction=spec.direction,
        load_if_exists=True,
        sampler=_sampler(spec, 0),
        pruner=_pruner(spec, train.num_epochs),
    )
    record = _spec_record(spec)
    existing = study.user_attrs.get("sweep")
    if existing is not None and existing != json.loads(json.dumps(record)):
        raise SearchSpaceError(
            f"study {spec.study_name!r} in {storage_url(spec, workdir)} was created with a different "
            f"sweep ({existing}); use a new --workdir or sweep.study_name"
        )
    if existing is None:
        study.set_user_attr("sweep", record)
        if spec.sampler == "grid":
            points = grid_points(list(spec.dims)) if spec.dims else [{}]
            for index, point in enumerate(points):
                for repeat in range(spec.seeds):
                    study.enqueue_trial(
                        point, user_attrs={"point": index, "seed": train.seed + repeat}, skip_if_exists=False
                    )
    with open(os.path.join(workdir, SWEEP_FILE), "w") as f:
        json.dump(
            {
                "storage": storage_url(spec, workdir),
                "study_name": spec.study_name,
                "config": json.loads(config.to_json_best_effort()),
            },
            f,
            indent=2,
        )
    return study


def load_sweep(workdir: str) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
    """(the study config, the sweep.json record) of a workdir made by `create_study`."""
    path = os.path.join(workdir, SWEEP_FILE)
    if not os.path.exists(path):
        raise StudyNotFoundError(
            f"{path} not found: create the study first with "
            "`python -m convnext_jax.sweep run --config FILE --workdir DIR`"
        )
    with open(path) as f:
        record = json.load(f)
    config = ml_collections.ConfigDict(json_tuples(record["config"]))
    config.lock()
    return config, record


def derive_accumulation(batch_size: int, devices: int, max_device_batch: int) -> int:
    """The fewest accumulation steps so that batch_size / (devices x accum) is a whole number <= max."""
    for accum in range(1, batch_size + 1):
        if batch_size % (devices * accum) == 0 and batch_size // (devices * accum) <= max_device_batch:
            return accum
    raise SearchSpaceError(
        f"batch_size {batch_size} cannot be split over {devices} devices into micro-batches of at "
        f"most {max_device_batch} (sweep.max_device_batch)"
    )


def _objective_value(spec: SweepSpec, summary: dict[str, Any], num_epochs: int) -> float:
    if spec.objective == "epochs_to_target":
        return float(summary.get("epochs_to_target") or num_epochs + 1)
    return float(summary[spec.objective])


class _NoQueuedTrial(Exception):
    """A grid worker asked for a trial after the queue emptied (a race with another worker)."""


class Objective:
    """One trial: the point's params (queued, or sampled and its repeats queued), train, report per epoch."""

    def __init__(self, spec: SweepSpec, train: ml_collections.ConfigDict, workdir: str):
        self.spec, self.train, self.workdir = spec, train, workdir
        self.queue_empty = False

    def __call__(self, trial: optuna.Trial) -> float:
        from convnext_jax.train import NonFiniteLossError, train_and_evaluate

        attrs = trial.user_attrs
        fresh = "seed" not in attrs  # a freshly sampled point (random / tpe), not a queued one
        if fresh:
            if self.spec.sampler == "grid":
                self.queue_empty = True
                raise _NoQueuedTrial("no queued grid point left")
            trial.set_user_attr("point", trial.number)
            trial.set_user_attr("seed", self.train.seed)
        params = {d.key: d.suggest(trial) for d in self.spec.dims}
        seed, point = trial.user_attrs["seed"], trial.user_attrs["point"]
        if fresh:
            for repeat in range(1, self.spec.seeds):
                trial.study.enqueue_trial(
                    params, user_attrs={"point": point, "seed": seed + repeat}, skip_if_exists=False
                )
        overrides = dict(params, seed=seed)
        if self.spec.max_device_batch:
            batch = int(overrides.get("batch_size", self.train.batch_size))
            overrides["optim.grad_accum_steps"] = derive_accumulation(
                batch, jax.device_count(), self.spec.max_device_batch
            )
        if self.train.device_memory_gb and not self.train.device_memory_cache:
            overrides["device_memory_cache"] = (
                self.workdir
            )  # one memory_fit.json for the study: each shape compiles once
        config = apply_params(self.train, overrides)
        print(f"started: {', '.join(f'{k}={v}' for k, v in params.items()) or 'base config'}, seed {seed}", flush=True)
        relative = attrs.get("workdir") or os.path.join("trials", f"{trial.number:04d}")  # a retry resumes there
        trial.set_user_attr("workdir", relative)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("grad_accum_steps", config.optim.grad_accum_steps)
        run_dir = os.path.join(self.workdir, relative)

        def report(epoch: int, metrics: dict[str, float]) -> None:
            trial.report(metrics[self.spec.reported_metric], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"pruned after epoch {epoch} ({self.spec.reported_metric} {metrics[self.spec.reported_metric]:.4f})"
                )

        try:
            summary = train_and_evaluate(config, run_dir, epoch_callback=report)
        except NonFiniteLossError as e:  # a diverged run is a result (e.g. too high an LR), not a failure
            summary = _diverged_summary(run_dir, config)
            trial.set_user_attr("diverged", str(e).split(";")[0])
        finally:
            gc.collect()  # the trial's model, state and loaders (compilation caches are kept: the next trial's
            # small ops reuse them, ~2 s per trial on CPU; the trial's own step is freed with it)
        for key in (
            "best_val_top1",
            "final_val_top1",
            "final_val_loss",
            "epochs_to_target",
            "params",
            "gmacs_per_image",
            "img_per_s",
            "compile_s",
            "steps",
        ):
            if summary.get(key) is not None:
                trial.set_user_attr("num_params" if key == "params" else key, summary[key])
        return _objective_value(self.spec, summary, config.num_epochs)


def _diverged_summary(run_dir: str, config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Best/last validation before a run diverged (loss: +inf when it never evaluated)."""
    evals = (
        [r for r in read_metrics(run_dir) if "val_top1" in r]
        if os.path.exists(os.path.join(run_dir, METRICS_FILE))
        else []
    )
    top1 = [r["val_top1"] for r in evals]
    reached = [r["epoch"] for r in evals if config.target_accuracy and r["val_top1"] >= config.target_accuracy]
    return {
        "best_val_top1": max(top1, default=0.0),
        "final_val_top1": top1[-1] if top1 else 0.0,
        "final_val_loss": float("inf"),
        "epochs_to_target": reached[0] if reached else None,
    }


def _points_started(trials: list[optuna.trial.FrozenTrial]) -> int:
    return len({t.user_attrs["point"] for t in trials if "point" in t.user_attrs})


def _finished(study: optuna.Study, spec: SweepSpec) -> bool:
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return False
    return spec.sampler == "grid" or _points_started(trials) >= spec.num_trials


def _others_running(study: optuna.Study) -> bool:
    return any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))


class _Heartbeat:
    """Record the trial's heartbeat every `interval` seconds while it runs (a worker that stops
    beating is dead: after the grace period its trial is failed and re-queued)."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            self.storage.record_heartbeat(self.trial_id)

    def __enter__(self) -> _Heartbeat:
        self.storage.record_heartbeat(self.trial_id)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


@contextlib.contextmanager
def _claim_lock(workdir: str, url: str):
    """SQLite cannot lock rows, and a journal file's appends from two workers could pop the same
    queued trial: serialise the claim with a file lock in the workdir (databases such as PostgreSQL
    lock rows themselves)."""
    if not url.startswith(("sqlite", JOURNAL_PREFIX)):
        yield
        return
    with open(os.path.join(workdir, ".claim.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _LinePrefixer:
    """A text stream that starts every line with `prefix` (several workers share one terminal)."""

    def __init__(self, stream: Any, prefix: str):
        self.stream, self.prefix, self.at_line_start = stream, prefix, True

    def write(self, text: str) -> int:
        out = []
        for piece in text.splitlines(keepends=True):
            if self.at_line_start and piece.strip():
                out.append(f"{self.prefix} ")
            out.append(piece)
            self.at_line_start = piece.endswith("\n")
        self.stream.write("".join(out))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def labelled_output(prefix: str):
    """Prefix every line printed to stdout and stderr inside the block with `prefix`."""
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _LinePrefixer(stdout, prefix), _LinePrefixer(stderr, prefix)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def run_worker(workdir: str, worker_index: int = 0) -> int:
    """Pull and run trials of the study in `workdir` until none is left; returns trials run."""
    config, record = load_sweep(workdir)
    spec, train = split_config(config)
    storage = open_storage(spec, workdir)
    study = optuna.load_study(
        study_name=record["study_name"],
        storage=storage,
        sampler=_sampler(spec, worker_index),
        pruner=_pruner(spec, train.num_epochs),
    )
    study_id = storage.get_study_id_from_name(record["study_name"])
    objective = Objective(spec, train, workdir)
    count = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # we run the heartbeat ourselves (see _Heartbeat), so optuna's ask-without-optimize warning does not apply
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        while True:
            with _claim_lock(workdir, record["storage"]):
                optuna.storages.fail_stale_trials(study)  # a dead worker's trial is failed and re-queued
                finished = _finished(study, spec)
            while finished and _others_running(study):
                # a trial still running may belong to a worker that died: stay until every running
                # trial ends, so that a dead worker's trial is re-queued (and run here), not lost
                time.sleep(min(spec.heartbeat_s, 5))
                with _claim_lock(workdir, record["storage"]):
                    optuna.storages.fail_stale_trials(study)
                    finished = _finished(study, spec)
            if finished:
                return count
            with _claim_lock(workdir, record["storage"]):
                if _finished(study, spec):
                    return count
                trial = study.ask()
            value, state = None, TrialState.COMPLETE
            label = f"[w{worker_index} trial {trial.number}]"
            with (
                _Heartbeat(
                    storage, storage.get_trial_id_from_study_id_trial_number(study_id, trial.number), spec.heartbeat_s
                ),
                labelled_output(label),
            ):
                try:
                    value = objective(trial)
                except optuna.TrialPruned as e:
                    state = TrialState.PRUNED
                    log.warning("trial %d pruned: %s", trial.number, e)
                except Exception:  # the study goes on; the trial is recorded as failed with its traceback
                    state = TrialState.FAIL
                    log.exception("trial %d failed (params %s)", trial.number, trial.params)
            study.tell(trial, value, state=state)
            print(
                f"{label} {state.name.lower()}"
                + (f" {spec.objective}={value:.4f}" if value is not None else "")
                + f" params {trial.params} seed {trial.user_attrs.get('seed')}",
                flush=True,
            )
            if objective.queue_empty:  # another worker took the last queued point first
                return count
            count += 1
