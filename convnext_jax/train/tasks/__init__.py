"""Training objectives on the one engine: what a model is trained to do (its loss), what an
evaluation adds up, which metric selects the best checkpoint, and everything else that differs
between objectives (its model around the run's architecture, weight decay, on-device inputs).
Classification and masked image modelling (FCMAE pre-training); a new objective is one module
here plus its entry in TASKS."""

from __future__ import annotations

import ml_collections

from convnext_jax.train.config import TASK_NAMES
from convnext_jax.train.tasks.base import Task
from convnext_jax.train.tasks.classification import Classification
from convnext_jax.train.tasks.fcmae import MaskedImageModeling

TASKS: dict[str, type] = {"classification": Classification, "fcmae": MaskedImageModeling}
assert tuple(TASKS) == TASK_NAMES, "every config.task name has its class here"


def task_of(config: ml_collections.ConfigDict, num_classes: int) -> Task:
    """The task a training config describes."""
    return TASKS[config.task].from_config(config, num_classes)


SELECT_ON = {"val_top1": "val_top1", "val_top1_ema": "val_top1_ema", "best": "val_top1_best"}


def selection_metric(config: ml_collections.ConfigDict) -> tuple[str, str]:
    """(metric, 'max' | 'min') that picks a run's best checkpoint: `select_on` (classification), or
    the task's own metric (classification val_top1, FCMAE val_loss)."""
    select_on = config.get("select_on", "")
    if select_on:
        return SELECT_ON[select_on], "max"
    task = TASKS[config.task]
    return task.best_metric, task.best_mode


__all__ = ["Classification", "MaskedImageModeling", "TASKS", "Task", "selection_metric", "task_of"]
