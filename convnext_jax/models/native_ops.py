"""LayerNorm and GELU by the native XLA:CPU kernels, and the per-backend choice.

Each op has two implementations of the same function: 'xla' (`layers.layer_norm`,
`layers.gelu`: XLA ops with hand-written VJPs) and 'ffi' (C++ FFI custom calls in
`convnext_jax/kernels/`, forward and backward, fp32). On CPU the native ones make one pass
where XLA:CPU makes several: LayerNorm's row reductions over few channels, GELU's erf saved
as an extra activation (docs/BENCHMARKS.md). 'auto' picks 'ffi' on CPU when the kernels can
be built and 'xla' elsewhere.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from convnext_jax.kernels import cpu_kernels_available, require_cpu_kernels
from convnext_jax.kernels.calls import ffi_call, sum_over_new_axes

NATIVE_IMPLS = ("xla", "ffi", "auto")


def _forward(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> tuple[jax.Array, ...]:
    rows = x.shape[:-1]
    return ffi_call("convnext_layernorm_forward", [x.shape, rows, rows], x, scale, bias, eps=np.float32(eps))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm_ffi(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """(x - mean) / sqrt(var + eps) * scale + bias over the last axis, fp32 (two-pass variance)."""
    if x.ndim < 1 or scale.shape != x.shape[-1:] or bias.shape != x.shape[-1:]:
        raise ValueError(f"layer norm of x {x.shape} needs scale and bias of shape {x.shape[-1:]}, "
                         f"got {scale.shape} and {bias.shape}")
    return _forward(x.astype(jnp.float32), scale.astype(jnp.float32), bias.astype(jnp.float32), eps)[0]


def _fwd(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float):
    y, mean, rstd = _forward(x.astype(jnp.float32), scale.astype(jnp.float32), bias.astype(jnp.float32), eps)
    return y, (x, scale, bias, mean, rstd)


def _bwd(eps: float, residuals: tuple[jax.Array, ...], g: jax.Array):
    x, scale, bias, mean, rstd = residuals
    dx, dscale, dbias = ffi_call("convnext_layernorm_backward", [x.shape, scale.shape, scale.shape],
                                 x.astype(jnp.float32), scale.astype(jnp.float32), mean, rstd, g.astype(jnp.float32))
    return (dx.astype(x.dtype), sum_over_new_axes(dscale, scale).astype(scale.dtype),
            sum_over_new_axes(dbias, bias).astype(bias.dtype))


layer_norm_ffi.defvjp(_fwd, _bwd)


@jax.custom_vjp
def gelu_ffi(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU, computed in fp32 and returned in x's dtype; the backward recomputes
    erf and the Gaussian density from x in one pass."""
    return ffi_call("convnext_gelu_forward", x.shape, x.astype(jnp.float32)).astype(x.dtype)


def _gelu_fwd(x: jax.Array):
    return gelu_ffi(x), x


def _gelu_bwd(x: jax.Array, g: jax.Array):
    dx = ffi_call("convnext_gelu_backward", x.shape, x.astype(jnp.float32), g.astype(jnp.float32))
    return (dx.astype(x.dtype),)


gelu_ffi.defvjp(_gelu_fwd, _gelu_bwd)


def resolve_native_impl(impl: str, option: str = "norm_impl") -> str:
    """Map 'auto' to 'ffi' on CPU (when the kernels build) and to 'xla' elsewhere.

    `option` names the config field in error messages ('norm_impl', 'gelu_impl').
    """
    if impl not in NATIVE_IMPLS:
        raise ValueError(f"{option} must be one of {NATIVE_IMPLS}, got {impl!r}")
    if impl == "ffi":
        require_cpu_kernels(option, "'auto' or 'xla'")
        return impl
    if impl == "auto":
        return "ffi" if jax.default_backend() == "cpu" and cpu_kernels_available() else "xla"
    return impl
