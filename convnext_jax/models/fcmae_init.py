"""The official FCMAE initialisation (facebookresearch/ConvNeXt-V2 `models/fcmae.py`).

`FCMAE._init_weights` is applied to every submodule after the encoder's own init, so it
overrides it: the stem, the encoder's depthwise and pointwise (MinkowskiLinear) weights, the
projection, the decoder's depthwise conv and the prediction are drawn from timm's
`trunc_normal_` with its default std 1 (truncated at +-2); the encoder's downsampling convs keep
std 0.02; the decoder's `nn.Linear` layers keep PyTorch's default (kaiming-uniform weights and
uniform biases, both within +-1/sqrt(fan_in)); biases are 0, norms 1/0, GRN 0, the mask token
N(0, 0.02).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

STD_ONE = {("stem_conv", "kernel"), ("proj", "kernel"), ("pred", "kernel")}
BLOCK_STD_ONE = {"conv_dw", "fc1", "fc2"}


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    values = rng.standard_normal(shape) * std
    outside = np.abs(values) > 2.0
    while outside.any():  # timm's trunc_normal_: absolute bounds [-2, 2]
        values[outside] = rng.standard_normal(int(outside.sum())) * std
        outside = np.abs(values) > 2.0
    return values


def official_init(model: Any, key: jax.Array) -> None:
    """Re-draw `model`'s parameters (an FCMAE) the way the official code initialises them."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        keys = tuple(str(k) for k in path)
        current = variable[...]
        shape, dtype = current.shape, current.dtype
        in_decoder = keys[0] == "decoder"
        module, leaf = (keys[-2], keys[-1]) if len(keys) >= 2 else ("", keys[-1])
        if keys in STD_ONE or (
            leaf == "kernel" and module in BLOCK_STD_ONE and not (in_decoder and module in ("fc1", "fc2"))
        ):
            value = _truncated_normal(rng, shape, 1.0)
        elif in_decoder and module in ("fc1", "fc2"):
            fan_in = shape[-2] if leaf == "kernel" else variable_fan_in(model, keys)
            bound = 1.0 / np.sqrt(fan_in)
            value = rng.uniform(-bound, bound, shape)
        else:
            continue
        variable[...] = jnp.asarray(value, dtype)


def variable_fan_in(model: Any, keys: tuple[str, ...]) -> int:
    """The fan-in of the decoder Linear a bias belongs to (its kernel's input size)."""
    state = dict((tuple(str(k) for k in p), v) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param)))
    return int(state[keys[:-1] + ("kernel",)][...].shape[-2])
