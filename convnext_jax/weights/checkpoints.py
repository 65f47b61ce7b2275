"""The weights inside a training run's checkpoints (`WORKDIR/checkpoints/<step>/state`): the
parameters or their EMA, read without the optimizer state."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from convnext_jax.run_files import CHECKPOINTS_DIR
from convnext_jax.weights.pytorch import WeightImportError

STATE_ITEM = "state"


def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
    """The complete checkpoints of a training workdir, oldest first (orbax's temporary
    directories of an interrupted save are not steps)."""
    root = os.path.join(os.fspath(workdir), CHECKPOINTS_DIR)
    if not os.path.isdir(root):
        return []
    return sorted(int(name) for name in os.listdir(root) if name.isdigit())


def is_training_workdir(path: str | os.PathLike) -> bool:
    return bool(checkpoint_steps(path))


def state_dir(workdir: str | os.PathLike, step: int | None = None) -> str:
    """The state directory of checkpoint `step` (default: the latest)."""
    steps = checkpoint_steps(workdir)
    if not steps:
        raise WeightImportError(
            f"{workdir} has no checkpoint ({os.path.join(os.fspath(workdir), CHECKPOINTS_DIR)}/"
            "<step> is missing): train first, or give another workdir"
        )
    step = steps[-1] if step is None else step
    if step not in steps:
        raise WeightImportError(f"{workdir} has no checkpoint at step {step}; it has steps {steps}")
    return os.path.join(os.path.abspath(os.fspath(workdir)), CHECKPOINTS_DIR, str(step), STATE_ITEM)


def read_checkpoint_params(workdir: str | os.PathLike, step: int | None = None, *, use_ema: bool = False) -> Any:
    """The parameter tree (or with `use_ema` its EMA) of a checkpoint, as host arrays."""
    path = state_dir(workdir, step)
    item = "ema" if use_ema else "params"
    tree = ocp.PyTreeCheckpointHandler().metadata(epath.Path(path)).tree
    if item not in tree:
        raise WeightImportError(
            f"{path} has no {item!r} (items: {sorted(tree)})"
            + ("; the run kept no EMA (ema_decay = 0)" if use_ema else "")
        )
    target = {item: jax.tree.map(lambda meta: jax.ShapeDtypeStruct(meta.shape, meta.dtype), tree[item])}
    restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray), target)
    restored = ocp.PyTreeCheckpointer().restore(
        path, args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True)
    )
    return restored[item]
