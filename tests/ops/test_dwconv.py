"""Every depthwise-conv formulation computes lax.conv's function, forward and backward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from convnext_jax.ops import implementation
from convnext_jax.ops.dwconv import depthwise_conv_ffi, depthwise_conv_lax, depthwise_conv_lax_vjp, depthwise_conv_shift

# Shapes cover: channels below, at and not a multiple of the kernel's 8-lane vectors, images
# smaller than the kernel, widths that are not a multiple of the 4-pixel tile, 1x1 and wide kernels.
CASES = [
    ((2, 9, 11, 6), 7),
    ((1, 4, 4, 3), 7),
    ((2, 9, 11, 6), 3),
    ((3, 6, 13, 20), 7),
    ((2, 2, 2, 16), 7),
    ((1, 5, 9, 8), 5),
    ((2, 7, 6, 12), 1),
    ((1, 8, 8, 10), 13),
]


def _random(shape, kernel_size, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal((kernel_size, kernel_size, 1, shape[-1])), jnp.float32)
    cot = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    return x, k, cot


def _grads(fn, x, k, cot):
    return jax.jit(jax.grad(lambda x, k: jnp.sum(fn(x, k) * cot), argnums=(0, 1)))(x, k)


# The shift formulation unrolls k*k taps, so kernels above 7 are tested for ffi only.
@pytest.mark.parametrize(
    "fn,shape,kernel_size",
    [(depthwise_conv_ffi, *case) for case in CASES]
    + [(depthwise_conv_shift, *case) for case in CASES if case[1] <= 7]
    + [(depthwise_conv_lax_vjp, *case) for case in CASES if case[1] <= 7],
)
def test_matches_lax_forward_and_gradients(fn, shape, kernel_size):
    x, k, cot = _random(shape, kernel_size)
    np.testing.assert_allclose(jax.jit(fn)(x, k), depthwise_conv_lax(x, k), atol=1e-5)
    for got, want in zip(_grads(fn, x, k, cot), _grads(depthwise_conv_lax, x, k, cot)):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(
    "fn", [depthwise_conv_shift, depthwise_conv_ffi, depthwise_conv_lax_vjp], ids=["shift", "ffi", "lax_vjp"]
)
def test_even_or_mismatched_kernels_are_rejected(fn):
    x = jnp.zeros((1, 8, 8, 4))
    with pytest.raises(ValueError, match="must be odd"):
        fn(x, jnp.zeros((4, 4, 1, 4)))
    with pytest.raises(ValueError, match=r"\(k, k, 1, C\) with C = 4"):
        fn(x, jnp.zeros((3, 3, 1, 5)))


def test_ffi_is_deterministic_and_takes_other_dtypes():
    x, k, cot = _random((5, 8, 8, 24), 7, seed=3)
    first, second = _grads(depthwise_conv_ffi, x, k, cot), _grads(depthwise_conv_ffi, x, k, cot)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    empty = jnp.zeros((0, 8, 8, 24))
    dx, dk = jax.grad(lambda x, k: jnp.sum(depthwise_conv_ffi(x, k)), argnums=(0, 1))(empty, k)
    assert dx.shape == empty.shape and not np.any(dk)  # empty batch: zero kernel gradient
    out = depthwise_conv_ffi(x.astype(jnp.bfloat16), k)  # computed in fp32, returned in bf16
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        out.astype(jnp.float32), depthwise_conv_lax(x.astype(jnp.bfloat16).astype(jnp.float32), k), atol=0.1, rtol=0.02
    )


def test_ffi_under_vmap_scan_and_shard_map():
    x, k, cot = _random((4, 6, 6, 8), 7, seed=4)
    want = depthwise_conv_lax(x, k)
    batched = jax.vmap(lambda xi: depthwise_conv_ffi(xi[None], k)[0])(x)
    np.testing.assert_allclose(batched, want, atol=1e-5)
    scanned = jax.lax.scan(lambda c, xi: (c, depthwise_conv_ffi(xi[None], k)[0]), 0, x)[1]
    np.testing.assert_allclose(scanned, want, atol=1e-5)
    # Inside shard_map with a replicated kernel the kernel gradient is summed over shards (the
    # 8-vs-1-device training test in tests/train/test_loop.py runs this on 8 devices).
    expected = _grads(depthwise_conv_lax, x, k, cot)
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    P = jax.sharding.PartitionSpec
    x, cot = (jax.device_put(a, jax.sharding.NamedSharding(mesh, P("data"))) for a in (x, cot))

    def local_grads(x, k, cot):
        dx, dk = jax.grad(lambda x, k: jnp.sum(depthwise_conv_ffi(x, k) * cot), argnums=(0, 1))(x, k)
        return dx, dk

    sharded = jax.jit(
        jax.shard_map(local_grads, mesh=mesh, in_specs=(P("data"), P(), P("data")), out_specs=(P("data"), P()))
    )
    for got, want in zip(sharded(x, k, cot), expected):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


def test_matches_torch_depthwise_conv():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 8, 8)).astype(np.float32)
    w = rng.standard_normal((5, 1, 7, 7)).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=3, groups=5).numpy()
    k = jnp.asarray(w.transpose(2, 3, 1, 0))
    for impl in ("lax", "shift", "ffi"):
        out = implementation("dwconv", impl)(jnp.asarray(x.transpose(0, 2, 3, 1)), k)
        np.testing.assert_allclose(np.asarray(out).transpose(0, 3, 1, 2), ref, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 9, 11, 6), (3, 6, 13, 20)])
def test_bias_in_the_native_kernel_matches_conv_plus_bias(shape):
    """With impl 'ffi' the bias starts the kernel's accumulators; every impl gives conv + bias
    and the same gradients for input, kernel and bias."""
    x, k, cot = _random(shape, 7, seed=6)
    bias = jnp.asarray(np.random.default_rng(7).standard_normal(shape[-1]), jnp.float32)

    def grads(impl):
        conv = implementation("dwconv", impl)
        return jax.grad(lambda x, k, b: jnp.sum(conv(x, k, b) * cot), argnums=(0, 1, 2))(x, k, bias)

    want_y = depthwise_conv_lax(x, k) + bias
    want = grads("lax")
    for impl in ("ffi", "shift"):
        np.testing.assert_allclose(implementation("dwconv", impl)(x, k, bias), want_y, atol=1e-4)
        for got, expected in zip(grads(impl), want):
            np.testing.assert_allclose(got, expected, atol=1e-3, rtol=1e-4)
    with pytest.raises(ValueError, match="bias must have shape"):
        implementation("dwconv", "ffi")(x, k, bias[:2])
