"""Training: config (schema and validation) -> setup (everything built from it) -> engine (the
step loop) with a task (the objective), in a run directory (resume, finish, evaluate).

Names are imported lazily: config files import `convnext_jax.train.config` without the engine.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"NonFiniteLossError": "convnext_jax.train.engine", "evaluate_checkpoint": "convnext_jax.train.run",
            "train_and_evaluate": "convnext_jax.train.run"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'convnext_jax.train' has no attribute {name!r}")
