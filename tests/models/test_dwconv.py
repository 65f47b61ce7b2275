"""Every depthwise-conv formulation computes lax.conv's function, forward and backward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from convnext_jax.models.dwconv import depthwise_conv, depthwise_conv_lax, depthwise_conv_shift, resolve_dwconv_impl


@pytest.mark.parametrize("kernel_size", [7, 3])
@pytest.mark.parametrize("shape", [(2, 9, 11, 6), (1, 4, 4, 3)])
def test_shift_matches_lax_forward_and_gradients(kernel_size, shape):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal((kernel_size, kernel_size, 1, shape[-1])), jnp.float32)
    np.testing.assert_allclose(depthwise_conv_shift(x, k), depthwise_conv_lax(x, k), atol=1e-5)
    cot = jnp.asarray(rng.standard_normal(shape), jnp.float32)

    def grads(fn):
        return jax.grad(lambda x, k: jnp.sum(fn(x, k) * cot), argnums=(0, 1))(x, k)

    for got, want in zip(grads(depthwise_conv_shift), grads(depthwise_conv_lax)):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_matches_torch_depthwise_conv():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 8, 8)).astype(np.float32)
    w = rng.standard_normal((5, 1, 7, 7)).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=3, groups=5).numpy()
    k = jnp.asarray(w.transpose(2, 3, 1, 0))
    for impl in ("lax", "shift"):
        out = depthwise_conv(jnp.asarray(x.transpose(0, 2, 3, 1)), k, impl)
        np.testing.assert_allclose(np.asarray(out).transpose(0, 3, 1, 2), ref, atol=1e-4)


def test_auto_and_invalid_impl():
    assert resolve_dwconv_impl("auto") in ("lax", "shift")
    with pytest.raises(ValueError, match="dwconv_impl"):
        resolve_dwconv_impl("fft")
