"""Training: config (schema and validation) -> setup (everything built from it) -> engine (the
step loop) with a task (the objective), in a run directory (resume, finish, evaluate).

Names are imported lazily: config files import `convnext_jax.train.config` without the engine.
"""

from __future__ import annotations

from convnext_jax.lazy import lazy_exports

_EXPORTS = {
    "NonFiniteLossError": "convnext_jax.train.engine",
    "evaluate_checkpoint": "convnext_jax.train.run",
    "train_and_evaluate": "convnext_jax.train.run",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
