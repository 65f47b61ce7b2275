"""Parameter utilities: counting and the weight-decay mask."""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx


def count_params(model_or_state: nnx.Module | Any) -> int:
    """Number of scalar parameters (nnx.Param only) of a model, abstract model or state."""
    state = nnx.state(model_or_state, nnx.Param) if isinstance(model_or_state, nnx.Module) else model_or_state
    return int(sum(leaf.size for leaf in jax.tree.leaves(state)))


def _leaf_name(path: tuple[Any, ...]) -> str:
    for entry in reversed(path):
        name = getattr(entry, "key", getattr(entry, "name", None))
        if isinstance(name, str) and name != "value":
            return name
    return ""


def weight_decay_mask(params: Any) -> Any:
    """True for conv/linear kernels, False for everything else.

    Excluded from decay: norm scales and biases, all biases, layer-scale gamma and GRN
    weight/bias (the reference recipes' rule: no decay on 1-D parameters; GRN gamma/beta
    matter for V2 fine-tuning). Name-based, so it is right for stacked (scanned) blocks too.
    """
    return jax.tree_util.tree_map_with_path(lambda path, _: _leaf_name(path) == "kernel", params)
