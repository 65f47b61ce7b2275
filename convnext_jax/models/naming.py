"""The model's parameter names, beside the model (as timm keeps `group_matcher` and
`checkpoint_filter_fn` beside its ConvNeXt): one table per architecture, listing every parameter
tensor with its Flax path, its timm key and shape, its layer id for layer-wise LR decay and its
output stride. From it come the PyTorch key mapping (`convnext_jax.weights`), layer-wise LR decay
(`convnext_jax.train.layer_decay`) and the analytic FLOP count (`forward_macs`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np

from convnext_jax.models.config import ConvNeXtConfig

KINDS = ("conv", "dw", "linear", "vector")


@dataclasses.dataclass(frozen=True)
class ParamName:
    """One PyTorch tensor <-> one Flax parameter (or one block's slice of a stacked one).

    kind: 'conv' (OIHW <-> HWIO), 'dw' (C1kk <-> kk1C), 'linear' ((out, in[, 1, 1]) <-> (in, out)),
      'vector' (norm scales, biases, layer scale, GRN).
    layer_id: timm's layer id (`group_matcher(coarse=False)`): stem 0, block g (over all stages) g + 1,
      a downsample that of its stage's first block, the head the last (sum(depths) + 1).
    stride: input pixels per output position of the layer; None after global pooling (the head).
    """

    torch_key: str
    path: tuple[str | int, ...]
    block: int | None
    kind: str
    torch_shape: tuple[int, ...]
    layer_id: int
    stride: int | None

    @property
    def is_weight(self) -> bool:
        """A conv/linear weight (multiply-accumulates; weight decay), not a vector."""
        return self.kind != "vector"


def parameter_names(cfg: ConvNeXtConfig) -> list[ParamName]:
    """Every parameter tensor of a model with this config, in timm's state-dict order."""
    names: list[ParamName] = []
    head_id = sum(cfg.depths) + 1

    def add(key: str, path: tuple[Any, ...], kind: str, shape: tuple[int, ...], layer_id: int, stride: int | None,
            block: int | None = None) -> None:
        names.append(ParamName(key, path, block, kind, shape, layer_id, stride))

    def norm(key: str, path: tuple[Any, ...], dim: int, layer_id: int, stride: int | None) -> None:
        add(f"{key}.weight", path + ("scale",), "vector", (dim,), layer_id, stride)
        add(f"{key}.bias", path + ("bias",), "vector", (dim,), layer_id, stride)

    d0, stride = cfg.dims[0], cfg.patch_size
    add("stem.0.weight", ("stem_conv", "kernel"), "conv", (d0, cfg.in_chans, cfg.patch_size, cfg.patch_size), 0,
        stride)
    add("stem.0.bias", ("stem_conv", "bias"), "vector", (d0,), 0, stride)
    norm("stem.1", ("stem_norm",), d0, 0, stride)
    linear_suffix = (1, 1) if cfg.conv_mlp else ()
    first_block = 1
    for i, (depth, dim) in enumerate(zip(cfg.depths, cfg.dims)):
        stage = ("stages", i)
        if i > 0:
            prev = cfg.dims[i - 1]
            norm(f"stages.{i}.downsample.0", stage + ("downsample_norm",), prev, first_block, stride)
            stride *= 2
            add(f"stages.{i}.downsample.1.weight", stage + ("downsample_conv", "kernel"), "conv", (dim, prev, 2, 2),
                first_block, stride)
            add(f"stages.{i}.downsample.1.bias", stage + ("downsample_conv", "bias"), "vector", (dim,), first_block,
                stride)
        hidden = int(cfg.mlp_ratio * dim)
        blocks = stage + ("blocks",)
        k = cfg.kernel_size
        for j in range(depth):
            key, layer = f"stages.{i}.blocks.{j}", first_block + j
            entries = [("conv_dw.weight", ("conv_dw", "kernel"), "dw", (dim, 1, k, k)),
                       ("conv_dw.bias", ("conv_dw", "bias"), "vector", (dim,)),
                       ("norm.weight", ("norm", "scale"), "vector", (dim,)),
                       ("norm.bias", ("norm", "bias"), "vector", (dim,)),
                       ("mlp.fc1.weight", ("fc1", "kernel"), "linear", (hidden, dim) + linear_suffix),
                       ("mlp.fc1.bias", ("fc1", "bias"), "vector", (hidden,))]
            if cfg.use_grn:
                entries += [("mlp.grn.weight", ("grn", "weight"), "vector", (hidden,)),
                            ("mlp.grn.bias", ("grn", "bias"), "vector", (hidden,))]
            entries += [("mlp.fc2.weight", ("fc2", "kernel"), "linear", (dim, hidden) + linear_suffix),
                        ("mlp.fc2.bias", ("fc2", "bias"), "vector", (dim,))]
            if cfg.ls_init_value is not None:
                entries.append(("gamma", ("gamma",), "vector", (dim,)))
            for suffix, path, kind, shape in entries:
                add(f"{key}.{suffix}", blocks + path, kind, shape, layer, stride, block=j)
        first_block += depth
    norm("head.norm", ("head_norm",), cfg.dims[-1], head_id, None)
    if cfg.num_classes > 0:
        add("head.fc.weight", ("head_fc", "kernel"), "linear", (cfg.num_classes, cfg.dims[-1]), head_id, None)
        add("head.fc.bias", ("head_fc", "bias"), "vector", (cfg.num_classes,), head_id, None)
    return names


def is_head_classifier(torch_key: str) -> bool:
    """The classifier (`head.fc`), which fine-tuning with another class count re-initialises."""
    return torch_key.startswith("head.fc.")


def official_to_timm_key(key: str) -> str:
    """facebookresearch ConvNeXt / ConvNeXt-V2 names -> timm names (as timm's `checkpoint_filter_fn`)."""
    key = key.replace("downsample_layers.0.", "stem.")
    key = re.sub(r"stages\.(\d+)\.(\d+)", r"stages.\1.blocks.\2", key)
    key = re.sub(r"downsample_layers\.(\d+)\.(\d+)", r"stages.\1.downsample.\2", key)
    key = key.replace("dwconv", "conv_dw").replace("pwconv", "mlp.fc")
    key = key.replace("grn.beta", "mlp.grn.bias").replace("grn.gamma", "mlp.grn.weight")
    if key.startswith("head."):
        key = key.replace("head.", "head.fc.", 1)
    elif key.startswith("norm."):
        key = "head." + key
    return key


def layer_ids(cfg: ConvNeXtConfig) -> dict[tuple[str | int, ...], np.ndarray]:
    """Flax parameter path -> layer id(s): a scalar array, or one id per block for stacked blocks."""
    ids: dict[tuple[str | int, ...], list[int]] = {}
    for name in parameter_names(cfg):
        ids.setdefault(name.path, []).append(name.layer_id)
    return {path: np.asarray(values[0] if len(values) == 1 and not _stacked(path) else values, np.int32)
            for path, values in ids.items()}


def _stacked(path: tuple[str | int, ...]) -> bool:
    return len(path) > 2 and path[0] == "stages" and path[2] == "blocks"


def forward_macs(cfg: ConvNeXtConfig, image_size: int | tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass on one image (square int or (height, width)):
    every conv/linear weight once per output position (the figure timm's model cards report as
    GMACs; norms, activations and biases are not counted)."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    macs = 0
    for name in parameter_names(cfg):
        if name.is_weight:
            positions = 1 if name.stride is None else (height // name.stride) * (width // name.stride)
            macs += positions * math.prod(name.torch_shape)
    return macs
