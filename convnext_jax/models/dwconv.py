"""Depthwise 2-D convolution, NHWC, stride 1, 'same' padding, in selectable formulations.

The depthwise 7x7 conv is ConvNeXt's performance risk in XLA: the grouped convolution
(`feature_group_count=C`) is slow on CPU, especially its backward pass. Every
formulation here computes the same function; `tests/models/test_dwconv.py` checks them
against `lax.conv_general_dilated` and `docs/BENCHMARKS.md` records their speed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

DWCONV_IMPLS = ("lax", "shift", "auto")


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


@jax.custom_vjp
def depthwise_conv_shift(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Depthwise conv as a sum of k*k shifted, per-channel scaled copies of the padded input.

    Custom VJP: the input gradient is the same shifted sum with the flipped kernel, the
    kernel gradient `_kernel_grad`. Autodiff of the forward compiles ~10x slower and runs slower.
    """
    return _shifted_sum(x, kernel)


def _shift_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _shifted_sum(x, kernel), (x, kernel)


def _shift_bwd(residuals: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    dx = _shifted_sum(g, kernel[::-1, ::-1])
    dkernel = _kernel_grad(x, g, kernel.shape[0]).astype(kernel.dtype)
    return dx.astype(x.dtype), dkernel


depthwise_conv_shift.defvjp(_shift_fwd, _shift_bwd)


def resolve_dwconv_impl(impl: str) -> str:
    """Map 'auto' to the fastest measured formulation for the default backend."""
    if impl not in DWCONV_IMPLS:
        raise ValueError(f"dwconv_impl must be one of {DWCONV_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    # Measured in docs/BENCHMARKS.md: on CPU the shifted sum is several times faster than
    # XLA's grouped conv; on GPU cuDNN's depthwise kernels are the reference choice.
    return "shift" if jax.default_backend() == "cpu" else "lax"


def depthwise_conv(x: jax.Array, kernel: jax.Array, impl: str = "auto") -> jax.Array:
    """Depthwise conv dispatching on `impl` ('lax' | 'shift' | 'auto')."""
    impl = resolve_dwconv_impl(impl)
    if impl == "lax":
        return depthwise_conv_lax(x, kernel)
    return depthwise_conv_shift(x, kernel)
