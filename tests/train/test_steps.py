"""The train step: accumulation == one large batch, one all-reduce per optimizer step (8 CPU
devices), float16 dynamic loss scaling (a non-finite step is skipped)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

import convnext_jax as cj
from convnext_jax.train.optim import LearningRate, build_optimizer
from convnext_jax.train.state import LossScaling, TrainState
from convnext_jax.train.steps import make_train_step
from convnext_jax.train.tasks import Classification

TINY = dict(depths=(1, 1, 2, 1), dims=(8, 16, 16, 16), dwconv_impl="lax", scan_blocks=True)


def _optim(**kw):
    base = dict(
        name="sgd",
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=0.0,
        clip_grad_norm=0.0,
        momentum=0.0,
        grad_accum_steps=1,
        layer_decay=0.0,
    )
    base.update(kw)
    return ml_collections.ConfigDict(base)


def _setup(dtype="float32", optim=None, loss_scaling=None):
    model = cj.create_model("convnextv2_atto", num_classes=10, dtype=dtype, rngs=0, **TINY)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = build_optimizer(optim or _optim(), params, LearningRate(100, schedule="constant"), peak_lr=0.1)
    step = jax.jit(make_train_step(graphdef, rest, tx, Classification(10, 0.1), loss_scaling=loss_scaling))
    return step, TrainState.create(params, tx, loss_scaling=loss_scaling)


def _batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.standard_normal((n, 32, 32, 3)).astype(np.float32), "label": rng.integers(0, 10, n)}


def _stack(batch, accum):
    return {k: jnp.asarray(v.reshape((accum, len(v) // accum) + v.shape[1:])) for k, v in batch.items()}


def test_accumulation_equals_one_large_batch():
    step, state = _setup()
    batch = _batch()
    one, m1 = step(jax.tree.map(jnp.copy, state), _stack(batch, 1), jax.random.key(0))
    two, m2 = step(jax.tree.map(jnp.copy, state), _stack(batch, 2), jax.random.key(0))
    assert float(m1["loss"]) == pytest.approx(float(m2["loss"]), rel=1e-6)
    assert float(m1["grad_norm"]) == pytest.approx(float(m2["grad_norm"]), rel=1e-5)
    assert float(m1["accuracy"]) == pytest.approx(float(m2["accuracy"]), rel=1e-6)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(two.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    moved = [float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(state.params))]
    assert max(moved) > 1e-4 and int(one.step) == 1


_COMMS_SCRIPT = r"""
import json, jax, jax.numpy as jnp
from flax import nnx
import convnext_jax as cj
from convnext_jax.bench.collectives import all_reduce_stats
from tests.train.test_steps import TINY, _batch, _optim, _stack
from convnext_jax.train.optim import LearningRate, build_optimizer
from convnext_jax.train.state import TrainState
from convnext_jax.train.steps import make_train_step
from convnext_jax.train.tasks import Classification
model = cj.create_model("convnextv2_atto", num_classes=10, rngs=0, **TINY)
graphdef, params, rest = nnx.split(model, nnx.Param, ...)
tx = build_optimizer(_optim(name="adamw", clip_grad_norm=1.0), params, LearningRate(100), peak_lr=0.1)
step = jax.jit(make_train_step(graphdef, rest, tx, Classification(10, 0.1)), donate_argnums=(0,))
out = {"devices": jax.device_count(), "param_bytes": 4 * cj.count_params(params)}
for accum in (1, 4):
    state = TrainState.create(params, tx)
    hlo = step.lower(state, _stack(_batch(32), accum), jax.random.key(0)).compile().as_text()
    out[accum] = all_reduce_stats(hlo)
print(json.dumps(out))
"""


def test_one_gradient_all_reduce_per_optimizer_step():
    """8 devices, 4 micro-steps: no collective inside the accumulation loop; the all-reduced
    bytes are one copy of the gradients (plus a few scalars), as without accumulation."""
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="8", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", _COMMS_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.join(os.path.dirname(__file__), "..", ".."),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8
    for accum in ("1", "4"):
        assert out[accum]["in_loops"] == 0, out
        assert out["param_bytes"] <= out[accum]["bytes"] <= out["param_bytes"] + 64, out
    assert out["1"]["bytes"] == out["4"]["bytes"]


def test_float16_overflow_skips_the_step_and_halves_the_scale():
    scaling = LossScaling(init_scale=2.0**40, growth_interval=2000)  # the scaled backward overflows in float16
    step, state = _setup(dtype="float16", loss_scaling=scaling)
    before = jax.tree.map(np.asarray, state.params)
    batch = _stack(_batch(), 1)
    state, metrics = step(state, batch, jax.random.key(0))
    assert not bool(metrics["finite"]) and float(metrics["loss_scale"]) == 2.0**40
    assert float(state.loss_scale["scale"]) == 2.0**39 and int(state.step) == 0
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(before)):
        np.testing.assert_array_equal(a, b)  # skipped: nothing applied
    state = state.replace(loss_scale={**state.loss_scale, "scale": jnp.float32(2.0**8)})
    state, metrics = step(state, batch, jax.random.key(0))
    assert bool(metrics["finite"]) and int(state.step) == 1 and np.isfinite(float(metrics["loss"]))
    assert int(state.loss_scale["good_steps"]) == 1
    changed = any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(before)))
    assert changed


def test_float16_gradients_match_float32_after_unscaling():
    _, fp32_state = _setup()
    step16, state16 = _setup(dtype="float16", loss_scaling=LossScaling(init_scale=2.0**10))
    step32, state32 = _setup()
    batch = _stack(_batch(), 1)
    _, m16 = step16(state16, batch, jax.random.key(0))
    _, m32 = step32(state32, batch, jax.random.key(0))
    assert float(m16["grad_norm"]) == pytest.approx(float(m32["grad_norm"]), rel=2e-2)
    assert float(m16["loss"]) == pytest.approx(float(m32["loss"]), rel=1e-2)
