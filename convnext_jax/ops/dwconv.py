"""Depthwise 2-D convolution, NHWC, stride 1, 'same' padding, in four formulations.

The depthwise 7x7 conv is ConvNeXt's performance risk in XLA: the grouped convolution
(`feature_group_count=C`) is slow on CPU, and its backward pass also on GPU. 'lax' is that
grouped conv (cuDNN on GPU), 'lax_vjp' the same forward with a backward of a grouped-conv
forward and batched matmuls, 'shift' a sum of shifted copies in plain XLA ops, 'ffi' a C++
XLA:CPU kernel. All compute the same function (`tests/ops/test_dwconv.py` checks them
against `lax.conv_general_dilated`; `docs/BENCHMARKS.md` records their speed). The
`dwconv_*` functions are the ops table's entries: (x, kernel, bias) -> y.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from convnext_jax.kernels import targets
from convnext_jax.kernels.calls import ffi_call, sum_over_new_axes


def depthwise_conv_lax(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Grouped convolution with one group per channel. x: (N,H,W,C), kernel: (k,k,1,C)."""
    k = kernel.shape[0]
    pad = k // 2
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(1, 1),
        padding=((pad, k - 1 - pad), (pad, k - 1 - pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


def _check_kernel(x: jax.Array, kernel: jax.Array) -> None:
    """The custom-gradient formulations need a square odd (k, k, 1, C) kernel matching x's C."""
    k = kernel.shape[0]
    if kernel.ndim != 4 or kernel.shape[1] != k or kernel.shape[2] != 1 or kernel.shape[3] != x.shape[-1]:
        raise ValueError(f"depthwise kernel must be (k, k, 1, C) with C = {x.shape[-1]}, got {kernel.shape}")
    if k % 2 == 0:
        raise ValueError(f"depthwise kernel size must be odd for 'same' padding, got {k}")


def _shifted_sum(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """sum_{i,j} pad(x)[:, i:i+H, j:j+W, :] * kernel[i, j]: one fused loop nest in XLA."""
    k = kernel.shape[0]
    pad = k // 2
    height, width = x.shape[1], x.shape[2]
    padded = jnp.pad(x, ((0, 0), (pad, k - 1 - pad), (pad, k - 1 - pad), (0, 0)))
    taps = kernel[:, :, 0, :]
    out = None
    for i in range(k):
        for j in range(k):
            term = padded[:, i : i + height, j : j + width, :] * taps[i, j]
            out = term if out is None else out + term
    return out


def _kernel_grad(x: jax.Array, g: jax.Array, k: int) -> jax.Array:
    """d loss / d kernel[i, j, c] = sum_{n,h,w} pad(x)[n, h+i, w+j, c] * g[n, h, w, c].

    Per kernel row i, one batched matmul over channels contracts (n, h) into a
    (W+k-1, W, C) correlation; its k diagonals are the row's k taps. ~4x faster on CPU
    than k*k separate reductions, and accumulated in fp32.
    """
    pad = k // 2
    height, width = x.shape[1], x.shape[2]
    padded = jnp.pad(x, ((0, 0), (pad, k - 1 - pad), (pad, k - 1 - pad), (0, 0)))
    rows = []
    for i in range(k):
        corr = jnp.einsum("nhac,nhbc->abc", padded[:, i : i + height], g, preferred_element_type=jnp.float32)
        rows.append(jnp.stack([jnp.trace(corr[j : j + width], axis1=0, axis2=1) for j in range(k)]))
    return jnp.stack(rows)[:, :, None, :]


def _with_transposed_backward(forward: Callable[[jax.Array, jax.Array], jax.Array], doc: str):
    """A depthwise conv (x, kernel) -> y computed by `forward`, with a custom VJP: the input
    gradient is `forward` of the output gradient with the flipped kernel, the kernel gradient
    `_kernel_grad` (batched matmuls, fp32)."""

    @jax.custom_vjp
    def conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
        _check_kernel(x, kernel)
        return forward(x, kernel)

    def conv_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        return conv(x, kernel), (x, kernel)

    def conv_bwd(residuals: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
        x, kernel = residuals
        dx = forward(g, kernel[::-1, ::-1])
        dkernel = _kernel_grad(x, g, kernel.shape[0]).astype(kernel.dtype)
        return dx.astype(x.dtype), dkernel

    conv.defvjp(conv_fwd, conv_bwd)
    conv.__doc__ = doc
    return conv


depthwise_conv_shift = _with_transposed_backward(
    _shifted_sum,
    "Depthwise conv as a sum of k*k shifted, per-channel scaled copies of the padded input.\n\n"
    "Custom VJP: the input gradient is the same shifted sum with the flipped kernel, the kernel gradient\n"
    "`_kernel_grad`. Autodiff of the forward compiles ~10x slower and runs slower.",
)

depthwise_conv_lax_vjp = _with_transposed_backward(
    lambda x, kernel: depthwise_conv_lax(x, kernel.astype(x.dtype)),
    "The grouped conv forward, with a backward made only of ops that are fast on GPUs.\n\n"
    "On CUDA a grouped convolution's forward is as fast as PyTorch's but XLA's backward of it is as slow\n"
    "as a dense convolution (jax#13800). Here the input gradient is another grouped-conv *forward* (the\n"
    "flipped kernel) and the kernel gradient k batched matmuls (`_kernel_grad`), accumulated in fp32.",
)


def _ffi_forward(x: jax.Array, taps: jax.Array, bias: jax.Array) -> jax.Array:
    return ffi_call(targets.DWCONV_FORWARD, x.shape, x, taps, bias)


@jax.custom_vjp
def depthwise_conv_bias_ffi(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """Depthwise conv plus a per-channel bias by the C++ XLA:CPU kernels in
    `convnext_jax/kernels` (FFI custom calls); the bias starts the accumulators, so it costs
    no pass of its own.

    Computes and accumulates in fp32 (other dtypes are cast in and out). The input gradient
    is the forward kernel with the flipped taps; the kernel gradient has its own kernel.
    CPU only; the kernels are compiled on first use (`convnext_jax.kernels.build`).
    """
    _check_kernel(x, kernel)
    if bias.shape != x.shape[-1:]:
        raise ValueError(f"depthwise conv bias must have shape {x.shape[-1:]}, got {bias.shape}")
    taps = kernel[:, :, 0, :].astype(jnp.float32)
    return _ffi_forward(x.astype(jnp.float32), taps, bias.astype(jnp.float32)).astype(x.dtype)


def _ffi_fwd(x: jax.Array, kernel: jax.Array, bias: jax.Array):
    return depthwise_conv_bias_ffi(x, kernel, bias), (x, kernel, bias)


def _ffi_bwd(residuals: tuple[jax.Array, jax.Array, jax.Array], g: jax.Array):
    x, kernel, bias = residuals
    g32 = g.astype(jnp.float32)
    taps = kernel[:, :, 0, :].astype(jnp.float32)
    dx = _ffi_forward(g32, taps[::-1, ::-1], jnp.zeros(taps.shape[-1:], jnp.float32))
    dkernel = ffi_call(targets.DWCONV_KERNEL_GRAD, taps.shape, x.astype(jnp.float32), g32)[:, :, None, :]
    dbias = jnp.sum(g32, axis=tuple(range(g.ndim - 1)))
    return (
        dx.astype(x.dtype),
        sum_over_new_axes(dkernel, kernel).astype(kernel.dtype),
        sum_over_new_axes(dbias, bias).astype(bias.dtype),
    )


depthwise_conv_bias_ffi.defvjp(_ffi_fwd, _ffi_bwd)


def depthwise_conv_ffi(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Depthwise conv by the native CPU kernels (`depthwise_conv_bias_ffi` without a bias)."""
    return depthwise_conv_bias_ffi(x, kernel, jnp.zeros(x.shape[-1:], jnp.float32))


def dwconv_lax(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """XLA's grouped conv (+ bias)."""
    y = depthwise_conv_lax(x, kernel)
    return y if bias is None else y + bias


def dwconv_lax_vjp(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """The grouped conv with the GPU-safe backward (+ bias)."""
    y = depthwise_conv_lax_vjp(x, kernel)
    return y if bias is None else y + bias


def dwconv_shift(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """The shifted sum (+ bias)."""
    y = depthwise_conv_shift(x, kernel)
    return y if bias is None else y + bias


def dwconv_ffi(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """The native CPU kernels, the bias inside the kernel."""
    return depthwise_conv_ffi(x, kernel) if bias is None else depthwise_conv_bias_ffi(x, kernel, bias)
