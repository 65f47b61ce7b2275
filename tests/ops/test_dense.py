"""Dense: the flattened-rows VJP gives autodiff's gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnext_jax.ops.dense import dense, dense_autodiff


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
    for got, want in zip(loss(dense), loss(dense_autodiff)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)
