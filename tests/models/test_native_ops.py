"""The native CPU LayerNorm and GELU compute what the XLA ones do, gradients included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from convnext_jax.models.layers import LayerNorm, apply_gelu, gelu, layer_norm
from convnext_jax.models.native_ops import gelu_ffi, layer_norm_ffi, resolve_native_impl


def _random(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape) * 3 + 1, jnp.float32)
    scale, bias = (jnp.asarray(rng.standard_normal(shape[-1]), jnp.float32) for _ in range(2))
    return x, scale, bias, jnp.asarray(rng.standard_normal(shape), jnp.float32)


def _grads(norm, x, scale, bias, cot):
    return jax.grad(lambda *a: jnp.sum(norm(*a, 1e-6) * cot), argnums=(0, 1, 2))(x, scale, bias)


# Channels below, at and above the 8-lane vector width and not a multiple of it; one row.
@pytest.mark.parametrize("shape", [(2, 3, 5, 40), (7, 13), (1, 1, 1, 3), (3, 1000), (1, 8), (64, 17)])
def test_matches_xla_layer_norm_and_torch(shape):
    x, scale, bias, cot = _random(shape)
    np.testing.assert_allclose(layer_norm_ffi(x, scale, bias, 1e-6), layer_norm(x, scale, bias, 1e-6),
                               atol=2e-6, rtol=1e-6)
    for got, want in zip(_grads(layer_norm_ffi, x, scale, bias, cot), _grads(layer_norm, x, scale, bias, cot)):
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
    xt, st, bt = (torch.tensor(np.array(a), requires_grad=True) for a in (x, scale, bias))
    yt = torch.nn.functional.layer_norm(xt, (shape[-1],), st, bt, 1e-6)
    (yt * torch.from_numpy(np.array(cot))).sum().backward()
    for got, want in zip(_grads(layer_norm_ffi, x, scale, bias, cot), (xt.grad, st.grad, bt.grad)):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-5)


def test_deterministic_empty_batch_and_bf16():
    x, scale, bias, cot = _random((300, 24), seed=1)
    first, second = _grads(layer_norm_ffi, x, scale, bias, cot), _grads(layer_norm_ffi, x, scale, bias, cot)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)  # partial scale/bias gradients summed in a fixed order
    empty = jnp.zeros((0, 24))
    dx, dscale, dbias = _grads(layer_norm_ffi, empty, scale, bias, empty)
    assert dx.shape == (0, 24) and not np.any(dscale) and not np.any(dbias)
    y = layer_norm_ffi(x.astype(jnp.bfloat16), scale, bias, 1e-6)  # computed in fp32
    np.testing.assert_allclose(y, layer_norm(x.astype(jnp.bfloat16).astype(jnp.float32), scale, bias, 1e-6),
                               atol=1e-5)
    dx = jax.grad(lambda v: jnp.sum(layer_norm_ffi(v, scale, bias, 1e-6)))(x.astype(jnp.bfloat16))
    assert dx.dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="scale and bias of shape"):
        layer_norm_ffi(x, scale[:5], bias, 1e-6)


def test_under_vmap_scan_and_shard_map():
    x, scale, bias, cot = _random((8, 6, 16), seed=2)
    want = layer_norm(x, scale, bias, 1e-6)
    np.testing.assert_allclose(jax.vmap(lambda v: layer_norm_ffi(v, scale, bias, 1e-6))(x), want, atol=2e-6)
    scanned = jax.lax.scan(lambda c, v: (c, layer_norm_ffi(v, scale, bias, 1e-6)), 0, x)[1]
    np.testing.assert_allclose(scanned, want, atol=2e-6)
    # Inside shard_map with replicated scale/bias their gradients are summed over the shards.
    expected = _grads(layer_norm, x, scale, bias, cot)
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    P = jax.sharding.PartitionSpec
    xs, cots = (jax.device_put(a, jax.sharding.NamedSharding(mesh, P("data"))) for a in (x, cot))
    sharded = jax.jit(jax.shard_map(lambda x, s, b, c: _grads(layer_norm_ffi, x, s, b, c), mesh=mesh,
                                    in_specs=(P("data"), P(), P(), P("data")), out_specs=(P("data"), P(), P())))
    for got, want in zip(sharded(xs, scale, bias, cots), expected):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


def test_module_impls_agree_and_auto_picks_ffi_on_cpu():
    x = _random((2, 4, 4, 40), seed=3)[0]
    outs = {}
    for impl in ("xla", "ffi", "auto"):
        norm = LayerNorm(40, impl=impl)
        outs[impl] = norm(x.astype(jnp.bfloat16))
        assert outs[impl].dtype == jnp.bfloat16
    np.testing.assert_allclose(outs["ffi"].astype(jnp.float32), outs["xla"].astype(jnp.float32), atol=1e-2)
    assert resolve_native_impl("auto") == ("ffi" if jax.default_backend() == "cpu" else "xla")
    with pytest.raises(ValueError, match="gelu_impl"):
        resolve_native_impl("fast", "gelu_impl")


def test_gelu_matches_torch_and_xla_everywhere():
    """Values and gradient over the whole fp32 range, incl. the tails where erf saturates,
    +-inf-free extremes, and sizes that are not a multiple of the vector width."""
    x = np.concatenate([np.linspace(-12, 12, 24001, dtype=np.float32),
                        np.array([-100, 100, 0, -0.0, 1e-30, -1e-30, 3e38, -3e38], np.float32)])
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    torch.nn.functional.gelu(xt).sum().backward()
    got = gelu_ffi(jnp.asarray(x))
    grad = jax.grad(lambda v: jnp.sum(gelu_ffi(v)))(jnp.asarray(x))
    np.testing.assert_allclose(got, torch.nn.functional.gelu(xt).detach().numpy(), atol=2e-6, rtol=1e-6)
    np.testing.assert_allclose(grad, xt.grad.numpy(), atol=1e-6)
    for n in (1, 7, 9, 1001):
        v = jnp.asarray(np.random.default_rng(n).standard_normal(n) * 4, jnp.float32)
        np.testing.assert_allclose(gelu_ffi(v), gelu(v), atol=1e-6)
    y = jax.vmap(gelu_ffi)(jnp.asarray(x[:64].reshape(8, 8)).astype(jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(y.astype(jnp.float32), apply_gelu(jnp.asarray(x[:64].reshape(8, 8)), "xla"),
                               atol=0.05, rtol=0.01)
