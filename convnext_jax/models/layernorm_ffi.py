"""LayerNorm over the last axis by the native XLA:CPU kernels, and the per-backend choice.

'xla' is `layers.layer_norm` (XLA ops with a closed-form VJP); 'ffi' runs the forward and
backward as C++ FFI custom calls (`convnext_jax/kernels/layernorm_cpu.cc`), one pass over
each row in L1 where XLA:CPU makes several slow row reductions (~7% of a ConvNeXt-atto
train step on CPU, docs/BENCHMARKS.md); 'auto' picks 'ffi' on CPU when the kernels can be
built and 'xla' elsewhere. Both compute the same function in fp32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from convnext_jax.kernels import cpu_kernels_available, load_cpu_kernels
from convnext_jax.kernels.calls import ffi_call, sum_over_new_axes

NORM_IMPLS = ("xla", "ffi", "auto")


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


def resolve_norm_impl(impl: str) -> str:
    """Map 'auto' to 'ffi' on CPU (when the kernels build) and to 'xla' elsewhere."""
    if impl not in NORM_IMPLS:
        raise ValueError(f"norm_impl must be one of {NORM_IMPLS}, got {impl!r}")
    backend = jax.default_backend()
    if impl == "ffi":
        if backend != "cpu":
            raise ValueError(f"norm_impl='ffi' is a CPU kernel; the default backend is {backend!r} "
                             "(use 'auto' or 'xla' there)")
        load_cpu_kernels()  # raises KernelBuildError with the compiler's message
        return impl
    if impl == "auto":
        return "ffi" if backend == "cpu" and cpu_kernels_available() else "xla"
    return impl
