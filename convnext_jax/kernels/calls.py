"""Calling the native kernels from JAX: fp32 FFI calls that also work inside `shard_map`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from convnext_jax.kernels.build import load_cpu_kernels


def varying_axes(*arrays: jax.Array) -> frozenset[str]:
    """Mesh axes over which any of `arrays` varies inside `shard_map` (empty outside)."""
    axes: frozenset[str] = frozenset()
    for a in arrays:
        # The one use of a non-documented JAX attribute: the abstract value's manual-axis type (what
        # `jax.lax.pcast` changes). JAX has no public accessor for it; an FFI call must declare its
        # results' varying axes itself, since XLA cannot infer them through a custom call.
        manual = getattr(jax.typeof(a), "manual_axis_type", None)
        axes |= frozenset(manual.varying) if manual is not None else frozenset()
    return axes


def _as_varying(a: jax.Array, axes: frozenset[str]) -> jax.Array:
    missing = tuple(sorted(axes - varying_axes(a)))
    return lax.pcast(a, missing, to="varying") if missing else a


def ffi_call(name: str, shapes: tuple[int, ...] | list[tuple[int, ...]], *args: jax.Array, **attrs: Any) -> Any:
    """Call the kernel `name` on fp32 operands; `shapes` is one result shape or a list of them.

    Inside `shard_map` the results vary over the same mesh axes as the operands (the kernel
    runs on each device's local block). Builds and registers the kernels on first use;
    raises KernelBuildError if that is impossible.
    """
    load_cpu_kernels()
    axes = varying_axes(*args)
    args = tuple(_as_varying(a, axes) for a in args)

    def result(shape: tuple[int, ...]) -> Any:
        if axes:  # the operand's abstract type carries the varying axes; keep them, change shape/dtype
            return jax.typeof(args[0]).update(shape=tuple(shape), dtype=jnp.dtype(jnp.float32), weak_type=False)
        return jax.ShapeDtypeStruct(tuple(shape), jnp.float32)

    results = [result(s) for s in shapes] if isinstance(shapes, list) else result(shapes)
    return jax.ffi.ffi_call(name, results, vmap_method="sequential")(*args, **attrs)


def sum_over_new_axes(grad: jax.Array, param: jax.Array) -> jax.Array:
    """A parameter shared across `shard_map` shards gets the sum of the shards' gradients."""
    summed = tuple(sorted(varying_axes(grad) - varying_axes(param)))
    return lax.psum(grad, summed) if summed else grad
