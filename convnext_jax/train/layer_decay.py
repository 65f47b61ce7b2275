"""Layer-wise learning-rate decay for fine-tuning: the LR of layer i is scaled by
decay ** (L - i), with the layer ids the model declares (`convnext_jax.models.naming.layer_ids`:
timm's assignment for ConvNeXt, stem 0 .. head L). Blocks are stored stacked per stage, so a
stage's scale is a vector broadcast over each stacked leaf's leading (block) axis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import optax

from convnext_jax.models.params import param_path


def layer_decay_scales(params: Any, layer_ids: Mapping[tuple[Any, ...], np.ndarray], decay: float) -> Any:
    """A tree like `params` of LR multipliers: scalars, or [depth, 1, ...] arrays for stacked blocks.

    `layer_ids` maps each parameter path to its layer id (one per block for stacked blocks).
    """
    ids = {tuple(str(k) for k in path): np.asarray(value) for path, value in layer_ids.items()}
    last = max(int(v.max()) for v in ids.values())

    def scale(path: tuple[Any, ...], leaf: Any) -> Any:
        key = param_path(path)
        if key not in ids:
            raise ValueError(f"layer decay: the model declares no layer id for parameter {'/'.join(key)}")
        layer = ids[key]
        scales = (decay ** (last - layer)).astype(np.float32)
        return scales.reshape((-1,) + (1,) * (np.ndim(leaf) - 1)) if layer.ndim else np.float32(scales)

    return jax.tree_util.tree_map_with_path(scale, params)


def scale_by_layer(scales: Any) -> optax.GradientTransformation:
    """Multiply each update by its layer's LR scale (after the optimizer: decoupled weight decay
    is scaled too, as torch param groups with lr * lr_scale)."""

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params
        return jax.tree.map(lambda u, s: u * s, updates, scales), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
