"""Run a stack of identical blocks whose parameters share a leading `depth` axis.

One parameter layout serves every execution mode, so checkpoints do not depend on it:
  * unrolled (a Python loop, XLA sees `depth` copies) or `lax.scan` (compile time flat in depth);
  * rematerialisation per segment of consecutive blocks with a policy:
    'none' (store activations), 'full' (recompute everything), 'dots' (save matmul/conv outputs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

BlockFn = Callable[[nnx.Module, jax.Array, dict[str, jax.Array]], jax.Array]

_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def segment_size(depth: int, remat: str, remat_segments: int) -> int:
    """Blocks per checkpointed segment: `remat_segments` splits a stage like
    `torch.utils.checkpoint.checkpoint_sequential(segments=...)`; 0 means one block each."""
    if remat == "none":
        return depth
    if remat_segments <= 0:
        return 1
    return math.ceil(depth / min(remat_segments, depth))


def _slice(tree: Any, start: int, stop: int) -> Any:
    return jax.tree.map(lambda a: a[start:stop], tree)


def run_block_stack(
    graphdef: nnx.GraphDef,
    stacked_state: nnx.State,
    x: jax.Array,
    per_block: dict[str, jax.Array],
    block_fn: BlockFn,
    *,
    scan: bool,
    remat: str = "none",
    remat_segments: int = 0,
) -> jax.Array:
    """Apply `block_fn(block_i, h, per_block_i)` for i in range(depth), threading h.

    `per_block` holds per-block inputs (drop-path rates, RNG keys) with leading axis depth.
    """
    depth = jax.tree.leaves(stacked_state)[0].shape[0]

    def one_block(h: jax.Array, params_and_inputs: tuple[Any, dict[str, jax.Array]]) -> tuple[jax.Array, None]:
        params, inputs = params_and_inputs
        return block_fn(nnx.merge(graphdef, params), h, inputs), None

    def run_segment(h: jax.Array, params: Any, inputs: dict[str, jax.Array]) -> jax.Array:
        length = jax.tree.leaves(params)[0].shape[0]
        if scan and length > 1:
            h, _ = jax.lax.scan(one_block, h, (params, inputs))
            return h
        for i in range(length):
            h, _ = one_block(h, jax.tree.map(lambda a, i=i: a[i], (params, inputs)))
        return h

    if remat != "none":
        run_segment = jax.checkpoint(run_segment, policy=_POLICIES[remat], prevent_cse=not scan)

    size = segment_size(depth, remat, remat_segments)
    num_full = depth // size
    if scan and num_full > 1:
        # Scan over whole segments: reshape (depth, ...) -> (num_full, size, ...).
        def grouped(tree: Any) -> Any:
            return jax.tree.map(lambda a: a[: num_full * size].reshape((num_full, size) + a.shape[1:]), tree)

        def segment_step(h: jax.Array, seg: tuple[Any, dict[str, jax.Array]]) -> tuple[jax.Array, None]:
            return run_segment(h, *seg), None

        x, _ = jax.lax.scan(segment_step, x, (grouped(stacked_state), grouped(per_block)))
    else:
        for g in range(num_full):
            x = run_segment(
                x, _slice(stacked_state, g * size, (g + 1) * size), _slice(per_block, g * size, (g + 1) * size)
            )
    if num_full * size < depth:
        start = num_full * size
        x = run_segment(x, _slice(stacked_state, start, depth), _slice(per_block, start, depth))
    return x
