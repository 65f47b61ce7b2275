"""Building blocks of ConvNeXt: init, fp32 LayerNorm, dense, GRN, depthwise conv, stochastic depth.

Layout is NHWC throughout. Parameters are stored in `param_dtype` (fp32); the compute
dtype is applied per op. Normalisation statistics are always computed in fp32. Modules hold
their parameters and call the op implementation they were built with (`convnext_jax.ops`,
resolved once by the model; the XLA one by default).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from convnext_jax.ops.dense import dense
from convnext_jax.ops.dwconv import dwconv_lax
from convnext_jax.ops.layer_norm import layer_norm

Dtype = Any


def _host_trunc_normal(
    key_data: np.ndarray, shape: tuple[int, ...], dtype: Any, std: float, lower: float, upper: float
) -> np.ndarray:
    rng = np.random.default_rng(np.asarray(key_data, dtype=np.uint64).ravel().tolist())
    values = rng.standard_normal(shape) * std
    outside = (values < lower) | (values > upper)
    while outside.any():  # rejection sampling: exact truncated normal
        values[outside] = rng.standard_normal(int(outside.sum())) * std
        outside = (values < lower) | (values > upper)
    return values.astype(dtype)


def trunc_normal(std: float = 0.02, lower: float = -2.0, upper: float = 2.0) -> nnx.Initializer:
    """timm/PyTorch `trunc_normal_(std=std)`: N(0, std) truncated at *absolute* bounds [lower, upper].

    jax's `truncated_normal` truncates at +-2 std instead, which shrinks the spread. Values are
    drawn on the host (NumPy, seeded by the JAX key): eager init then costs no XLA compilation
    per parameter shape (~0.25 s each on CPU), and traced init (jit) gives the same values.
    """

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> jax.Array:
        data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        shape, dtype = tuple(shape), jnp.dtype(dtype)
        sample = functools.partial(_host_trunc_normal, shape=shape, dtype=dtype, std=std, lower=lower, upper=upper)
        if isinstance(data, jax.core.Tracer):
            return jax.pure_callback(sample, jax.ShapeDtypeStruct(shape, dtype), data)
        return jnp.asarray(sample(np.asarray(data)))

    return init


def constant(value: float) -> nnx.Initializer:
    """Constant init built on the host (no per-shape XLA compilation in eager mode)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> jax.Array:
        return jnp.asarray(np.full(tuple(shape), value, dtype=jnp.dtype(dtype)))

    return init


class LayerNorm(nnx.Module):
    """LayerNorm over the channel (last) axis, computed in fp32 with two-pass variance.

    `op`: a `layer_norm(x, scale, bias, eps)` implementation from the ops table.
    """

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-6,
        out_dtype: Dtype = None,
        param_dtype: Dtype = jnp.float32,
        op: Callable = layer_norm,
    ):
        self.scale = nnx.Param(constant(1.0)(None, (num_features,), param_dtype))
        self.bias = nnx.Param(constant(0.0)(None, (num_features,), param_dtype))
        self.eps = eps
        self.out_dtype = out_dtype
        self.op = op

    def __call__(self, x: jax.Array) -> jax.Array:
        out_dtype = self.out_dtype or x.dtype
        y = self.op(
            x.astype(jnp.float32), self.scale[...].astype(jnp.float32), self.bias[...].astype(jnp.float32), self.eps
        )
        return y.astype(out_dtype)


class Dense(nnx.Linear):
    """nnx.Linear (same parameters, init and dtype promotion) computed by a `dense(x, kernel, bias)`
    implementation from the ops table."""

    def __init__(self, *args: Any, op: Callable = dense, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.op = op

    def __call__(self, inputs: jax.Array, out_sharding: Any = None) -> jax.Array:
        if self.bias is None or out_sharding is not None or self.preferred_element_type is not None:
            return super().__call__(inputs, out_sharding)
        inputs, kernel, bias = self.promote_dtype((inputs, self.kernel[...], self.bias[...]), dtype=self.dtype)
        return self.op(inputs, kernel, bias)


class GlobalResponseNorm(nnx.Module):
    """ConvNeXt-V2 GRN: gamma * (x * Nx) + beta + x, Nx = ||x||_HW / (mean_C ||x||_HW + eps).

    `weight`/`bias` are the paper's gamma/beta (timm names), initialised to zero. `stats`:
    'sample' takes the norm over each image's positions (the paper), 'batch' over every position
    of the batch (the official sparse FCMAE encoder). With `keep` (N, H, W, 1; 0 = a removed
    position), removed positions do not count.
    """

    def __init__(
        self, num_features: int, *, eps: float = 1e-6, param_dtype: Dtype = jnp.float32, stats: str = "sample"
    ):
        self.weight = nnx.Param(constant(0.0)(None, (num_features,), param_dtype))
        self.bias = nnx.Param(constant(0.0)(None, (num_features,), param_dtype))
        self.eps = eps
        self.stats = stats

    def __call__(self, x: jax.Array, keep: jax.Array | None = None) -> jax.Array:
        x32 = x.astype(jnp.float32)
        squares = jnp.square(x32) if keep is None else jnp.square(x32) * keep.astype(jnp.float32)
        axes = (0, 1, 2) if self.stats == "batch" else (1, 2)
        sums = jnp.sum(squares, axis=axes, keepdims=True)
        # ||x|| with PyTorch's gradient at 0 (zero, where d sqrt would be inf): a channel can be exactly
        # zero at every counted position (GELU of large negative inputs underflows to 0).
        positive = sums > 0
        gx = jnp.where(positive, jnp.sqrt(jnp.where(positive, sums, 1.0)), 0.0)
        nx = gx / (jnp.mean(gx, axis=-1, keepdims=True) + self.eps)
        gamma = self.weight[...].astype(jnp.float32)
        beta = self.bias[...].astype(jnp.float32)
        return (x32 + (gamma * (x32 * nx) + beta)).astype(x.dtype)


class DepthwiseConv(nnx.Module):
    """k x k depthwise conv with bias, stride 1, same padding. kernel: (k, k, 1, C) (HWIO)."""

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        *,
        rngs: nnx.Rngs,
        op: Callable = dwconv_lax,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        self.kernel = nnx.Param(trunc_normal()(rngs.params(), (kernel_size, kernel_size, 1, channels), param_dtype))
        self.bias = nnx.Param(constant(0.0)(None, (channels,), param_dtype))
        self.op = op
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        return self.op(x, self.kernel[...].astype(self.dtype), self.bias[...].astype(self.dtype))


def drop_path(x: jax.Array, rate: jax.Array | float, key: jax.Array) -> jax.Array:
    """Stochastic depth (timm semantics): drop the whole residual branch per sample with
    probability `rate`, and rescale kept samples by 1/keep_prob. `rate` may be traced."""
    keep_prob = 1.0 - jnp.asarray(rate, jnp.float32)
    mask = jax.random.bernoulli(key, keep_prob, (x.shape[0],) + (1,) * (x.ndim - 1))
    scale = jnp.where(keep_prob > 0.0, 1.0 / jnp.maximum(keep_prob, 1e-12), 0.0)
    return x * (mask * scale).astype(x.dtype)
