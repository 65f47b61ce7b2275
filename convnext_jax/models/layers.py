"""Building blocks of ConvNeXt: init, fp32 LayerNorm, GRN, depthwise conv, stochastic depth.

Layout is NHWC throughout. Parameters are stored in `param_dtype` (fp32); the compute
dtype is applied per op. Normalisation statistics are always computed in fp32.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from convnext_jax.models.dwconv import depthwise_conv

Dtype = Any


def trunc_normal(std: float = 0.02, lower: float = -2.0, upper: float = 2.0) -> nnx.Initializer:
    """timm/PyTorch `trunc_normal_(std=std)`: N(0, std) truncated at absolute bounds [-2, 2].

    Note: jax's `truncated_normal` truncates at +-2 *std*, which shrinks the spread; PyTorch's
    bounds are absolute, so with std=0.02 the truncation is effectively never hit.
    """

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> jax.Array:
        lo, hi = lower / std, upper / std
        return (jax.random.truncated_normal(key, lo, hi, shape, jnp.float32) * std).astype(dtype)

    return init


class LayerNorm(nnx.Module):
    """LayerNorm over the channel (last) axis, computed in fp32 with two-pass variance."""

    def __init__(self, num_features: int, *, eps: float = 1e-6, out_dtype: Dtype = None,
                 param_dtype: Dtype = jnp.float32):
        self.scale = nnx.Param(jnp.ones((num_features,), param_dtype))
        self.bias = nnx.Param(jnp.zeros((num_features,), param_dtype))
        self.eps = eps
        self.out_dtype = out_dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        out_dtype = self.out_dtype or x.dtype
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        centered = x32 - mean
        var = jnp.mean(jnp.square(centered), axis=-1, keepdims=True)
        y = centered * jax.lax.rsqrt(var + self.eps)
        y = y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        return y.astype(out_dtype)


class GlobalResponseNorm(nnx.Module):
    """ConvNeXt-V2 GRN: gamma * (x * Nx) + beta + x, Nx = ||x||_HW / (mean_C ||x||_HW + eps).

    `weight`/`bias` are the paper's gamma/beta (timm names), initialised to zero.
    """

    def __init__(self, num_features: int, *, eps: float = 1e-6, param_dtype: Dtype = jnp.float32):
        self.weight = nnx.Param(jnp.zeros((num_features,), param_dtype))
        self.bias = nnx.Param(jnp.zeros((num_features,), param_dtype))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        gx = jnp.sqrt(jnp.sum(jnp.square(x32), axis=(1, 2), keepdims=True))
        nx = gx / (jnp.mean(gx, axis=-1, keepdims=True) + self.eps)
        gamma = self.weight[...].astype(jnp.float32)
        beta = self.bias[...].astype(jnp.float32)
        return (x32 + (gamma * (x32 * nx) + beta)).astype(x.dtype)


class DepthwiseConv(nnx.Module):
    """k x k depthwise conv with bias, stride 1, same padding. kernel: (k, k, 1, C) (HWIO)."""

    def __init__(self, channels: int, kernel_size: int, *, rngs: nnx.Rngs, impl: str = "auto",
                 dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32):
        self.kernel = nnx.Param(trunc_normal()(rngs.params(), (kernel_size, kernel_size, 1, channels), param_dtype))
        self.bias = nnx.Param(jnp.zeros((channels,), param_dtype))
        self.impl = impl
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        y = depthwise_conv(x, self.kernel[...].astype(self.dtype), self.impl)
        return y + self.bias[...].astype(self.dtype)


def drop_path(x: jax.Array, rate: jax.Array | float, key: jax.Array) -> jax.Array:
    """Stochastic depth (timm semantics): drop the whole residual branch per sample with
    probability `rate`, and rescale kept samples by 1/keep_prob. `rate` may be traced."""
    keep_prob = 1.0 - jnp.asarray(rate, jnp.float32)
    mask = jax.random.bernoulli(key, keep_prob, (x.shape[0],) + (1,) * (x.ndim - 1))
    scale = jnp.where(keep_prob > 0.0, 1.0 / jnp.maximum(keep_prob, 1e-12), 0.0)
    return x * (mask * scale).astype(x.dtype)
