"""Parameter rules, in one place: a parameter's path, counting, the weight-decay masks (fine-tuning
and the official FCMAE pre-training) and the analytic MAC count (from the name tables of
`convnext_jax.models.naming`)."""

from __future__ import annotations

import math
from typing import Any

import jax
from flax import nnx

from convnext_jax.models.fcmae import is_fcmae_config
from convnext_jax.models.naming import fcmae_parameter_names, parameter_names


def count_params(model_or_state: nnx.Module | Any) -> int:
    """Number of scalar parameters (nnx.Param only) of a model, abstract model or state."""
    state = nnx.state(model_or_state, nnx.Param) if isinstance(model_or_state, nnx.Module) else model_or_state
    return int(sum(leaf.size for leaf in jax.tree.leaves(state)))


def param_path(path: tuple[Any, ...]) -> tuple[str, ...]:
    """A pytree leaf path of a parameter tree as the string keys of the model's parameter path
    (e.g. ('stages', '0', 'blocks', 'dwconv', 'kernel'); nnx.State's trailing 'value' dropped) —
    the keys of `naming.parameter_names(...).path` and of `naming.layer_ids`."""
    keys = [getattr(entry, "key", getattr(entry, "idx", getattr(entry, "name", None))) for entry in path]
    if keys and keys[-1] == "value":
        keys = keys[:-1]
    return tuple(str(k) for k in keys)


def weight_decay_mask(params: Any) -> Any:
    """True for conv/linear kernels, False for everything else.

    Excluded from decay: norm scales and biases, all biases, layer-scale gamma and GRN
    weight/bias (the reference recipes' rule: no decay on 1-D parameters; GRN gamma/beta
    matter for V2 fine-tuning). Name-based, so it is right for stacked (scanned) blocks too.
    """
    return jax.tree_util.tree_map_with_path(lambda path, _: param_path(path)[-1:] == ("kernel",), params)


def fcmae_weight_decay_mask(cfg: Any, params: Any) -> Any:
    """The official pre-training's weight-decay rule (`optim_factory.add_weight_decay`): decay every
    tensor of two or more dimensions in the official layout except biases — so unlike fine-tuning,
    GRN gamma/beta ((1, C)) and the mask token are decayed; norms and biases are not."""
    decay = {
        tuple(str(k) for k in n.path): len(n.torch_shape) >= 2 and not n.torch_key.endswith(".bias")
        for n in fcmae_parameter_names(cfg)
    }

    def rule(path: tuple[Any, ...], _: Any) -> bool:
        return decay[param_path(path)]

    return jax.tree_util.tree_map_with_path(rule, params)


def forward_macs(cfg: Any, image_size: int | tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass on one image (square int or (height, width)):
    every conv/linear weight once per output position (the figure timm's model cards report as
    GMACs; norms, activations and biases are not counted). For an FCMAE config, the dense
    computation (every position, removed or kept)."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    macs = 0
    names = fcmae_parameter_names(cfg) if is_fcmae_config(cfg) else parameter_names(cfg)
    for name in names:
        if name.is_weight:
            positions = 1 if name.stride is None else (height // name.stride) * (width // name.stride)
            macs += positions * math.prod(name.torch_shape)
    return macs
