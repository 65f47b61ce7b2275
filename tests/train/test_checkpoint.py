"""Checkpoint retention keeps what it promises: the latest N (the last one always, whatever it is)
plus the best M by the selection metric; preemption saves go once they are not among the latest."""

import os

import jax.numpy as jnp
import pytest

from convnext_jax.data import SyntheticSource, create_loader
from convnext_jax.train.checkpoint import Checkpointer
from convnext_jax.train.state import TrainState


def _kept(workdir):
    return sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())


@pytest.mark.parametrize(
    "keep_latest, keep_best, best_mode, expected",
    [
        (1, 1, "max", [[1], [2], [2, 3], [2, 4], [2, 5]]),  # latest 1 + best (val_top1 0.9 at step 2)
        (2, 0, "max", [[1], [1, 2], [2, 3], [3, 4], [4, 5]]),  # the latest 2 only
        (1, 2, "min", [[1], [1, 2], [1, 3], [1, 3, 4], [1, 3, 5]]),  # lowest 2 (steps 1, 3) + latest
    ],
)
def test_the_latest_and_the_best_are_kept(tmp_path, keep_latest, keep_best, best_mode, expected):
    checkpointer = Checkpointer(
        str(tmp_path), keep_latest=keep_latest, keep_best=keep_best, best_metric="val_top1", best_mode=best_mode
    )
    loader = iter(create_loader(SyntheticSource(8, 32, 5), batch_size=4, transforms=[], shuffle=False))
    metrics = {1: 0.5, 2: 0.9, 3: 0.6, 4: None, 5: 0.7}  # step 4: a preemption save (no evaluation)
    for step, value in metrics.items():
        state = TrainState(step=jnp.int32(step), params={"w": jnp.full((2,), float(step))}, opt_state={})
        checkpointer.save(step, state, loader, metrics=None if value is None else {"val_top1": value})
        checkpointer.wait_until_finished()
        assert _kept(tmp_path) == expected[step - 1], step
    assert checkpointer.latest_step() == 5
    checkpointer.close()
