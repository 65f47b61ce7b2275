"""LayerNorm: the XLA implementation matches PyTorch, values and gradients; the native CPU
kernel computes what the XLA one does, under every transformation the model uses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from convnext_jax.ops.layer_norm import layer_norm, layer_norm_ffi


@pytest.mark.parametrize("shape", [(2, 3, 5, 40), (7, 320), (1, 1, 1, 3)])
def test_layer_norm_values_and_gradients_match_torch(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32) * 3 + 1
    scale, bias = (rng.standard_normal(shape[-1]).astype(np.float32) for _ in range(2))
    cot = rng.standard_normal(shape).astype(np.float32)

    def jax_loss(x, scale, bias):
        return jnp.sum(layer_norm(x, scale, bias, 1e-6) * cot)

    got_y = layer_norm(jnp.asarray(x), jnp.asarray(scale), jnp.asarray(bias), 1e-6)
    got = jax.grad(jax_loss, argnums=(0, 1, 2))(jnp.asarray(x), jnp.asarray(scale), jnp.asarray(bias))
    xt, st, bt = (torch.tensor(a, requires_grad=True) for a in (x, scale, bias))
    yt = torch.nn.functional.layer_norm(xt, (shape[-1],), st, bt, 1e-6)
    (yt * torch.from_numpy(cot)).sum().backward()
    np.testing.assert_allclose(got_y, yt.detach().numpy(), atol=2e-5)
    for g, want in zip(got, (xt.grad, st.grad, bt.grad)):
        np.testing.assert_allclose(g, want.numpy(), atol=1e-4, rtol=1e-5)


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
    np.testing.assert_allclose(
        layer_norm_ffi(x, scale, bias, 1e-6), layer_norm(x, scale, bias, 1e-6), atol=2e-6, rtol=1e-6
    )
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
    np.testing.assert_allclose(y, layer_norm(x.astype(jnp.bfloat16).astype(jnp.float32), scale, bias, 1e-6), atol=1e-5)
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
    sharded = jax.jit(
        jax.shard_map(
            lambda x, s, b, c: _grads(layer_norm_ffi, x, s, b, c),
            mesh=mesh,
            in_specs=(P("data"), P(), P(), P("data")),
            out_specs=(P("data"), P(), P()),
        )
    )
    for got, want in zip(sharded(xs, scale, bias, cots), expected):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)
