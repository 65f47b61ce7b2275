"""The layer modules call the op implementation they are given, in the dtypes they promise."""

import jax
import jax.numpy as jnp
import numpy as np

from convnext_jax.models.layers import LayerNorm
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
