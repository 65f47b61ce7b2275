"""Compile time of a ConvNeXt stage vs depth, unrolled vs lax.scan over the blocks."""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import convnext_jax as cj


def bench_stage_compile(
    depth: int, *, scan: bool, dim: int = 64, image_size: int = 64, batch: int = 8, dwconv_impl: str = "auto"
) -> dict[str, Any]:
    """Seconds to lower+compile the gradient of a one-stage ConvNeXt with `depth` blocks."""
    model = cj.create_model(
        "convnext_atto", depths=(depth,), dims=(dim,), num_classes=10, scan_blocks=scan, dwconv_impl=dwconv_impl
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    images = jnp.zeros((batch, image_size, image_size, 3))
    labels = jax.nn.one_hot(jnp.zeros((batch,), jnp.int32), 10)

    def loss(params):
        return optax.softmax_cross_entropy(nnx.merge(graphdef, params, rest)(images), labels).mean()

    start = time.perf_counter()
    jax.jit(jax.value_and_grad(loss)).lower(params).compile()
    return {"depth": depth, "mode": "scan" if scan else "unrolled", "compile_s": time.perf_counter() - start}
