"""The train state: float16 loss scaling's rule, and the on-disk layout of the state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from convnext_jax.train.state import LossScaling, TrainState


def test_loss_scale_grows_after_the_interval():
    scaling = LossScaling(init_scale=8.0, growth_interval=3)
    state = scaling.initial_state()
    scales = []
    for finite in (True, True, True, True, False, True):
        state = scaling.update(state, jnp.asarray(finite))
        scales.append(float(state["scale"]))
    assert scales == [8.0, 8.0, 16.0, 16.0, 8.0, 8.0]


def test_checkpoint_layout_is_a_plain_dict_without_absent_parts():
    params = {"w": jnp.ones((2, 3))}
    state = TrainState.create(params, optax.sgd(0.1))
    tree = state.to_checkpoint()
    assert set(tree) == {"step", "params", "opt_state"}  # no EMA, no loss scale: nothing stored for them
    full = TrainState.create(params, optax.sgd(0.1), ema=True, loss_scaling=LossScaling())
    assert set(full.to_checkpoint()) == {"step", "params", "opt_state", "ema", "loss_scale"}
    back = TrainState.from_checkpoint(full.to_checkpoint())
    assert jax.tree.structure(back) == jax.tree.structure(full)
    np.testing.assert_array_equal(back.ema["w"], params["w"])
