"""Forward+backward time of the 7x7 depthwise conv: each JAX formulation vs PyTorch."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from convnext_jax.bench.timing import time_calls
from convnext_jax.ops import implementation


def bench_dwconv(
    batch: int,
    size: int,
    channels: int,
    *,
    impls: tuple[str, ...] = ("lax", "shift"),
    kernel_size: int = 7,
    steps: int = 20,
    warmup: int = 3,
    with_torch: bool = True,
) -> list[dict[str, Any]]:
    """Time sum(conv(x)^2) forward and forward+backward (grads for x and kernel)."""
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((batch, size, size, channels)).astype(np.float32)
    k_np = (rng.standard_normal((kernel_size, kernel_size, 1, channels)) * 0.1).astype(np.float32)
    x, k = jnp.asarray(x_np), jnp.asarray(k_np)
    shape = f"{batch}x{size}x{size}x{channels}"
    rows = []
    for impl in impls:
        conv = implementation("dwconv", impl)
        fwd = jax.jit(lambda x, k, conv=conv: conv(x, k))
        grad = jax.jit(jax.grad(lambda x, k, conv=conv: jnp.sum(conv(x, k) ** 2), argnums=(0, 1)))
        f = time_calls(lambda: fwd(x, k).block_until_ready(), steps=steps, warmup=warmup)
        fb = time_calls(lambda: jax.block_until_ready(grad(x, k)), steps=steps, warmup=warmup)
        rows.append(
            {
                "impl": f"jax {impl}",
                "shape (NHWC)": shape,
                "fwd_ms": f["median_s"] * 1e3,
                "fwd_bwd_ms": fb["median_s"] * 1e3,
            }
        )
    if with_torch:
        import torch

        conv = torch.nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        tx = torch.from_numpy(x_np.transpose(0, 3, 1, 2)).contiguous(memory_format=torch.channels_last)
        tx.requires_grad_(True)

        def torch_fwd() -> None:
            with torch.no_grad():
                conv(tx)

        def torch_fwd_bwd() -> None:
            (conv(tx) ** 2).sum().backward()

        f = time_calls(torch_fwd, steps=steps, warmup=warmup)
        fb = time_calls(torch_fwd_bwd, steps=steps, warmup=warmup)
        rows.append(
            {
                "impl": "torch (channels_last)",
                "shape (NHWC)": shape,
                "fwd_ms": f["median_s"] * 1e3,
                "fwd_bwd_ms": fb["median_s"] * 1e3,
            }
        )
    return rows
