"""Layer-wise learning-rate decay for fine-tuning, with timm's layer assignment for ConvNeXt.

Layer ids (timm `param_groups_layer_decay` with `group_matcher(coarse=False)`): the stem is 0;
block g (counted over all stages) is g + 1; a stage's downsample shares the id of its first
block; the head (norm + fc) is the last id, L = total blocks + 1. The LR of layer i is scaled
by decay ** (L - i). Blocks are stored stacked per stage, so a stage's scale is a vector
broadcast over each stacked leaf's leading (block) axis.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import optax


def _keys(path: tuple[Any, ...]) -> list[Any]:
    return [getattr(entry, "key", getattr(entry, "idx", getattr(entry, "name", None))) for entry in path]


def _stage_depths(params: Any) -> list[int]:
    depths: dict[int, int] = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        keys = _keys(path)
        if keys[0] == "stages" and keys[2] == "blocks":
            depths[int(keys[1])] = leaf.shape[0]
    return [depths[i] for i in sorted(depths)]


def layer_decay_scales(params: Any, decay: float) -> Any:
    """A tree like `params` of LR multipliers (scalars, or [depth, 1, ...] arrays for stacked blocks)."""
    depths = _stage_depths(params)
    first_block = np.cumsum([0] + depths[:-1]) + 1  # layer id of each stage's first block
    last = sum(depths) + 1

    def scale(path: tuple[Any, ...], leaf: Any) -> Any:
        keys = _keys(path)
        if keys[0].startswith("stem"):
            layer = 0
        elif keys[0] == "stages" and keys[2] == "blocks":
            ids = first_block[int(keys[1])] + np.arange(leaf.shape[0])
            return (decay ** (last - ids)).astype(np.float32).reshape((-1,) + (1,) * (leaf.ndim - 1))
        elif keys[0] == "stages":  # downsample_norm / downsample_conv
            layer = int(first_block[int(keys[1])])
        elif keys[0].startswith("head"):
            layer = last
        else:
            raise ValueError(f"layer decay: no layer id for parameter {jax.tree_util.keystr(path)}")
        return np.float32(decay ** (last - layer))

    return jax.tree_util.tree_map_with_path(scale, params)


def scale_by_layer(scales: Any) -> optax.GradientTransformation:
    """Multiply each update by its layer's LR scale (after the optimizer: decoupled weight decay
    is scaled too, as torch param groups with lr * lr_scale)."""

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params
        return jax.tree.map(lambda u, s: u * s, updates, scales), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
