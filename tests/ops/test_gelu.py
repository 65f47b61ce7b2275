"""GELU: the XLA implementation and the native CPU kernel are PyTorch's exact GELU."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from convnext_jax.ops.gelu import gelu, gelu_ffi


def test_gelu_is_torchs_exact_gelu():
    x = np.linspace(-8, 8, 1001, dtype=np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.gelu(xt)
    yt.sum().backward()
    np.testing.assert_allclose(gelu(jnp.asarray(x)), yt.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(gelu(v)))(jnp.asarray(x)), xt.grad.numpy(), atol=1e-6)


def test_gelu_matches_torch_and_xla_everywhere():
    """Values and gradient over the whole fp32 range, incl. the tails where erf saturates,
    +-inf-free extremes, and sizes that are not a multiple of the vector width."""
    x = np.concatenate(
        [
            np.linspace(-12, 12, 24001, dtype=np.float32),
            np.array([-100, 100, 0, -0.0, 1e-30, -1e-30, 3e38, -3e38], np.float32),
        ]
    )
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
    np.testing.assert_allclose(y.astype(jnp.float32), gelu(jnp.asarray(x[:64].reshape(8, 8))), atol=0.05, rtol=0.01)
