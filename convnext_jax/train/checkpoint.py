"""Orbax checkpoints of the train state together with the data iterator position.

Saves are async (`wait_until_finished` before exit); orbax writes to a temporary directory
and renames it when complete, so a kill during a save leaves the previous step restorable.
RNG keys are not stored: they are derived from (seed, step).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from convnext_jax.run_files import CHECKPOINTS_DIR


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
            os.path.join(os.path.abspath(workdir), CHECKPOINTS_DIR), options=options, item_names=("state", "data")
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_iterator: Any, metrics: dict[str, float] | None = None) -> None:
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator)
            ),
            metrics=metrics,
        )

    def restore(self, step: int, abstract_state: Any, data_iterator: Any) -> Any:
        """Restore the state (with the shardings of `abstract_state`) and the iterator in place."""
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), data=grain.checkpoint.CheckpointRestore(data_iterator)
            ),
        )
        return restored.state

    def wait_until_finished(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
