"""Execution options change speed/memory, never the function: scan, remat, segments, bf16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import convnext_jax as cj

SMALL = dict(depths=(2, 1, 3, 1), dims=(8, 16, 24, 32), num_classes=5, dwconv_impl="lax")


def _loss_and_grads(model, x, y):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params):
        logits = nnx.merge(graphdef, params, rest)(x)
        return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], -1)[:, 0])

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    return float(loss), jax.tree.leaves(grads)


@pytest.fixture(scope="module")
def reference_results(batch):
    """Loss and gradients of the plain (unrolled, no remat) model, computed once per variant."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _loss_and_grads(cj.create_model(name, rngs=1, **SMALL), *batch)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.standard_normal((4, 32, 32, 3)), jnp.float32), jnp.asarray([0, 1, 2, 3])


@pytest.mark.parametrize("name", ["convnext_atto", "convnextv2_atto"])
@pytest.mark.parametrize("options", [
    dict(scan_blocks=True),
    dict(remat="full"),
    dict(remat="dots", scan_blocks=True),
    dict(remat="full", remat_segments=2, scan_blocks=True),
    dict(remat="full", remat_segments=2),
])
def test_execution_options_preserve_loss_and_gradients(name, options, batch, reference_results):
    ref_loss, ref_grads = reference_results(name)
    loss, grads = _loss_and_grads(cj.create_model(name, rngs=1, **SMALL, **options), *batch)
    assert loss == pytest.approx(ref_loss, abs=1e-5)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-4)


def _jaxpr_size(depth, scan):
    model = cj.create_model("convnext_atto", depths=(1, 1, depth, 1), dims=(8, 8, 8, 8), num_classes=2,
                            scan_blocks=scan)
    graphdef, state = nnx.split(model)
    jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(state, jnp.zeros((1, 32, 32, 3)))
    return len(jaxpr.jaxpr.eqns) + sum(len(e.params["jaxpr"].jaxpr.eqns) for e in jaxpr.jaxpr.eqns
                                       if e.primitive.name == "scan")


def test_scan_keeps_program_size_flat_in_depth():
    assert _jaxpr_size(3, scan=True) == _jaxpr_size(24, scan=True)
    assert _jaxpr_size(24, scan=False) > 3 * _jaxpr_size(3, scan=False)


def test_bf16_compute_keeps_fp32_params_and_logits(batch):
    x, _ = batch
    fp32 = cj.create_model("convnextv2_atto", rngs=2, **SMALL)
    bf16 = cj.create_model("convnextv2_atto", rngs=2, dtype="bfloat16", **SMALL)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(bf16, nnx.Param)))
    out16, out32 = bf16(x), fp32(x)
    assert out16.dtype == jnp.float32
    np.testing.assert_allclose(out16, out32, atol=0.05 * float(jnp.abs(out32).max()) + 1e-3)
    assert not np.allclose(out16, out32, atol=1e-7)  # really computed in bf16


def test_bf16_intermediates_are_bf16(batch):
    x, _ = batch
    model = cj.create_model("convnext_atto", dtype="bfloat16", **SMALL)
    features = model.forward_features(x)
    assert features.dtype == jnp.bfloat16


def test_input_validation(batch):
    model = cj.create_model("convnext_atto", **SMALL)
    with pytest.raises(ValueError, match="NHWC"):
        model(jnp.zeros((2, 3, 32, 32)))
    with pytest.raises(ValueError, match="total stride 32"):
        model(jnp.zeros((2, 16, 16, 3)))
