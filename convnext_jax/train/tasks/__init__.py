"""Training objectives on the one engine: what a model is trained to do (its loss), what an
evaluation adds up, and which metric selects the best checkpoint. Classification now; masked
image modelling (FCMAE pre-training) is the second task on the same seam."""

from convnext_jax.train.tasks.base import Task
from convnext_jax.train.tasks.classification import Classification
from convnext_jax.train.tasks.fcmae import MaskedImageModeling

__all__ = ["Classification", "MaskedImageModeling", "Task"]
