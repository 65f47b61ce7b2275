"""The checkpoint format, in one module: WORKDIR/checkpoints/<step>/ holds `state` (the
TrainState as the plain dict of `TrainState.to_checkpoint`: params, opt_state, step, and ema /
loss_scale when used), `data` (the grain iterator's position) and orbax's `metrics` (the
evaluation of an epoch-end save). `Checkpointer` saves and restores it during training (async;
orbax writes to a temporary directory and renames it when complete, so a kill during a save
leaves the previous step restorable); `read_checkpoint_params` reads the weights alone, for
evaluation, averaging and export. RNG keys are not stored: they are derived from (seed, step).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from convnext_jax.errors import WeightImportError
from convnext_jax.run_files import CHECKPOINTS_DIR
from convnext_jax.train.state import TrainState

STATE_ITEM = "state"  # the TrainState
DATA_ITEM = "data"  # the data iterator's position
PARAMS_KEY, EMA_KEY = "params", "ema"  # the weights inside the state item


class _QuietUntrackedSaves(logging.Filter):
    """Drops orbax's warning for a save without metrics (a preemption or periodic save): it is kept
    by design (keep_checkpoints_without_metrics), nothing for the user to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "did not provide metrics" not in record.getMessage()


logging.getLogger("absl").addFilter(_QuietUntrackedSaves())  # orbax logs through absl.logging


class Checkpointer:
    """Checkpoints kept by what the run promises: the `keep_latest` most recent ones (a preemption
    or periodic save among them; the last one always, so a finished run stays finished) plus the
    `keep_best` best by the selection metric (evaluated epoch-end saves; what checkpoint averaging
    uses). Orbax's own max_to_keep + best_fn would keep only the N best and delete the latest."""

    def __init__(
        self,
        workdir: str,
        *,
        keep_latest: int = 2,
        keep_best: int = 1,
        best_metric: str | None = "val_top1",
        best_mode: str = "max",
    ):
        metric_of = (lambda metrics: metrics[best_metric]) if best_metric else None
        policies: list[Any] = [ocp.checkpoint_managers.LatestN(n=max(1, keep_latest))]
        if metric_of and keep_best:
            policies.append(
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=metric_of,
                    reverse=best_mode == "min",
                    n=keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            create=True,
            enable_async_checkpointing=True,
            best_fn=metric_of,  # orbax writes a save's metrics only with a best_fn
            best_mode=best_mode,
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
        )
        self.manager = ocp.CheckpointManager(
            os.path.join(os.path.abspath(workdir), CHECKPOINTS_DIR), options=options, item_names=(STATE_ITEM, DATA_ITEM)
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, data_iterator: Any, metrics: dict[str, float] | None = None) -> None:
        self.manager.save(
            step,
            args=ocp.args.Composite(
                **{
                    STATE_ITEM: ocp.args.StandardSave(state.to_checkpoint()),
                    DATA_ITEM: grain.checkpoint.CheckpointSave(data_iterator),
                }
            ),
            metrics=metrics,
        )

    def restore(self, step: int, like: TrainState, data_iterator: Any) -> TrainState:
        """The state of checkpoint `step` (with the shapes and shardings of `like`); the data
        iterator is restored in place."""
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like.to_checkpoint())
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                **{
                    STATE_ITEM: ocp.args.StandardRestore(target),
                    DATA_ITEM: grain.checkpoint.CheckpointRestore(data_iterator),
                }
            ),
        )
        return TrainState.from_checkpoint(restored[STATE_ITEM])

    def wait_until_finished(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


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
    item = EMA_KEY if use_ema else PARAMS_KEY
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
