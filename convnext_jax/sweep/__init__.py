"""Hyperparameter sweeps as Optuna studies: search spaces over config keys, workers, reports."""

from convnext_jax.sweep.space import SearchSpaceError, parse_space
from convnext_jax.sweep.spec import split_config, with_sweep
from convnext_jax.sweep.study import StorageError, create_study, run_worker

__all__ = [
    "SearchSpaceError",
    "StorageError",
    "create_study",
    "parse_space",
    "run_study",
    "run_worker",
    "split_config",
    "with_sweep",
    "write_report",
]


def run_study(*args, **kwargs):
    from convnext_jax.sweep.launch import run_study as _run

    return _run(*args, **kwargs)


def write_report(workdir: str):
    from convnext_jax.sweep.report import write_report as _write

    return _write(workdir)
