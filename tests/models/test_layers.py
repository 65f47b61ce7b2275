"""The layers: PyTorch's truncated-normal init (eager and traced), stochastic depth per sample, modules
calling the op they are given."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import convnext_jax as cj
from convnext_jax.models.layers import LayerNorm, drop_path, trunc_normal
from convnext_jax.ops import implementation, resolve_impl


def test_layer_norm_module_with_each_implementation():
    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 4, 4, 40)) * 3 + 1, jnp.float32)
    outs = {}
    for impl in ("xla", "ffi"):
        norm = LayerNorm(40, op=implementation("layer_norm", impl))
        outs[impl] = norm(x.astype(jnp.bfloat16))
        assert outs[impl].dtype == jnp.bfloat16
    np.testing.assert_allclose(outs["ffi"].astype(jnp.float32), outs["xla"].astype(jnp.float32), atol=1e-2)
    assert LayerNorm(40, out_dtype=jnp.float32)(x.astype(jnp.bfloat16)).dtype == jnp.float32
    assert resolve_impl("layer_norm") == ("ffi" if jax.default_backend() == "cpu" else "xla")


def test_trunc_normal_uses_absolute_bounds_like_pytorch():
    values = np.asarray(trunc_normal(0.02)(jax.random.key(0), (200_000,)))
    assert abs(values.std() - 0.02) < 5e-4  # jax's truncated_normal(+-2 std) would give ~0.0176
    assert abs(values.mean()) < 5e-4
    wide = np.asarray(trunc_normal(1.0)(jax.random.key(1), (100_000,)))
    assert wide.min() >= -2.0 and wide.max() <= 2.0 and wide.std() < 0.9  # truncation at +-2 applies


def test_traced_and_eager_init_agree():
    eager = cj.create_model("convnext_atto", depths=(1, 1, 1, 1), dims=(8, 8, 8, 8), num_classes=3, rngs=4)
    traced = nnx.jit(
        lambda: cj.create_model("convnext_atto", depths=(1, 1, 1, 1), dims=(8, 8, 8, 8), num_classes=3, rngs=4)
    )()
    for a, b in zip(jax.tree.leaves(nnx.state(eager, nnx.Param)), jax.tree.leaves(nnx.state(traced, nnx.Param))):
        np.testing.assert_array_equal(a, b)


def test_drop_path_drops_whole_samples_and_rescales():
    x = jnp.ones((4000, 2, 2, 3))
    out = np.asarray(drop_path(x, 0.25, jax.random.key(0)))
    per_sample = out.reshape(4000, -1)
    values = np.unique(per_sample)
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.75, rel=1e-6)
    assert np.all(per_sample.min(1) == per_sample.max(1))  # whole sample kept or dropped
    assert abs((per_sample[:, 0] == 0).mean() - 0.25) < 0.03
    assert abs(out.mean() - 1.0) < 0.05  # expectation preserved
    np.testing.assert_array_equal(drop_path(x, 0.0, jax.random.key(0)), x)
