"""Hand-written gradients of the model's layers agree with PyTorch's autograd."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from convnext_jax.models.layers import dense, gelu, layer_norm


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


def test_gelu_is_torchs_exact_gelu():
    x = np.linspace(-8, 8, 1001, dtype=np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.gelu(xt)
    yt.sum().backward()
    np.testing.assert_allclose(gelu(jnp.asarray(x)), yt.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(gelu(v)))(jnp.asarray(x)), xt.grad.numpy(), atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 5, 8), (4, 8), (6,)])
def test_dense_gradients_equal_autodiff(shape):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((shape[-1], 5)), jnp.float32)
    bias = jnp.asarray(rng.standard_normal(5), jnp.float32)
    cot = jnp.asarray(rng.standard_normal(shape[:-1] + (5,)), jnp.float32)

    def loss(fn):
        return jax.grad(lambda *a: jnp.sum(fn(*a) * cot), argnums=(0, 1, 2))(x, kernel, bias)

    np.testing.assert_allclose(dense(x, kernel, bias), x @ kernel + bias, atol=1e-6)
    for got, want in zip(loss(dense), loss(lambda x, k, b: x @ k + b)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)
