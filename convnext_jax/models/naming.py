"""The model's parameter names, beside the model (as timm keeps `group_matcher` and
`checkpoint_filter_fn` beside its ConvNeXt): one table per architecture, listing every parameter
tensor with its Flax path, its timm key and shape, its layer id for layer-wise LR decay and its
output stride. From it come the PyTorch key mapping (`convnext_jax.weights`), layer-wise LR decay
(`convnext_jax.train.layer_decay`) and the analytic FLOP count (`convnext_jax.models.params`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

from convnext_jax.models.config import ConvNeXtConfig
from convnext_jax.models.fcmae import FCMAEConfig

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

    def add(
        key: str,
        path: tuple[Any, ...],
        kind: str,
        shape: tuple[int, ...],
        layer_id: int,
        stride: int | None,
        block: int | None = None,
    ) -> None:
        names.append(ParamName(key, path, block, kind, shape, layer_id, stride))

    def norm(key: str, path: tuple[Any, ...], dim: int, layer_id: int, stride: int | None) -> None:
        add(f"{key}.weight", path + ("scale",), "vector", (dim,), layer_id, stride)
        add(f"{key}.bias", path + ("bias",), "vector", (dim,), layer_id, stride)

    d0, stride = cfg.dims[0], cfg.patch_size
    add("stem.0.weight", ("stem_conv", "kernel"), "conv", (d0, cfg.in_chans, cfg.patch_size, cfg.patch_size), 0, stride)
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
            add(
                f"stages.{i}.downsample.1.weight",
                stage + ("downsample_conv", "kernel"),
                "conv",
                (dim, prev, 2, 2),
                first_block,
                stride,
            )
            add(
                f"stages.{i}.downsample.1.bias",
                stage + ("downsample_conv", "bias"),
                "vector",
                (dim,),
                first_block,
                stride,
            )
        hidden = int(cfg.mlp_ratio * dim)
        blocks = stage + ("blocks",)
        k = cfg.kernel_size
        for j in range(depth):
            key, layer = f"stages.{i}.blocks.{j}", first_block + j
            entries = [
                ("conv_dw.weight", ("conv_dw", "kernel"), "dw", (dim, 1, k, k)),
                ("conv_dw.bias", ("conv_dw", "bias"), "vector", (dim,)),
                ("norm.weight", ("norm", "scale"), "vector", (dim,)),
                ("norm.bias", ("norm", "bias"), "vector", (dim,)),
                ("mlp.fc1.weight", ("fc1", "kernel"), "linear", (hidden, dim) + linear_suffix),
                ("mlp.fc1.bias", ("fc1", "bias"), "vector", (hidden,)),
            ]
            if cfg.use_grn:
                entries += [
                    ("mlp.grn.weight", ("grn", "weight"), "vector", (hidden,)),
                    ("mlp.grn.bias", ("grn", "bias"), "vector", (hidden,)),
                ]
            entries += [
                ("mlp.fc2.weight", ("fc2", "kernel"), "linear", (dim, hidden) + linear_suffix),
                ("mlp.fc2.bias", ("fc2", "bias"), "vector", (dim,)),
            ]
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
    return {
        path: np.asarray(values[0] if len(values) == 1 and not _stacked(path) else values, np.int32)
        for path, values in ids.items()
    }


def _stacked(path: tuple[str | int, ...]) -> bool:
    return len(path) > 2 and path[0] == "stages" and path[2] == "blocks"


# ---------------------------------------------------------------------------------------------
# FCMAE: the official pre-training checkpoints' layout (sparse encoder, dense decoder)

FCMAE_ONLY = ("proj", "mask_token", "decoder", "pred")  # Flax paths that a classifier does not have


def fcmae_parameter_names(cfg: Any) -> list[ParamName]:
    """Every parameter of an FCMAE model (`FCMAEConfig`) under its key in the official FCMAE
    checkpoints: `encoder.*` in MinkowskiEngine's layout (convolution `kernel`s of shape
    (k*k, in, out) or (k*k, C), (1, C) biases and GRN parameters, `.ln` / `.linear` wrappers),
    then the dense `proj`, `mask_token`, `decoder.j.*` and `pred`. Kinds 'sparse_conv' and
    'sparse_dw' are the (k*k, ...) kernels; layer ids are 0 (no layer decay in pre-training)."""
    enc = cfg.encoder
    names: list[ParamName] = []

    def add(
        key: str, path: tuple[Any, ...], kind: str, shape: tuple[int, ...], stride: int | None, block: int | None = None
    ) -> None:
        names.append(ParamName(key, path, block, kind, shape, 0, stride))

    d0, stride, k = enc.dims[0], enc.patch_size, enc.kernel_size
    add(
        "encoder.downsample_layers.0.0.weight",
        ("stem_conv", "kernel"),
        "conv",
        (d0, enc.in_chans, enc.patch_size, enc.patch_size),
        stride,
    )
    add("encoder.downsample_layers.0.0.bias", ("stem_conv", "bias"), "vector", (d0,), stride)
    add("encoder.downsample_layers.0.1.weight", ("stem_norm", "scale"), "vector", (d0,), stride)
    add("encoder.downsample_layers.0.1.bias", ("stem_norm", "bias"), "vector", (d0,), stride)
    for i, (depth, dim) in enumerate(zip(enc.depths, enc.dims)):
        stage = ("stages", i)
        if i > 0:
            prev, key = enc.dims[i - 1], f"encoder.downsample_layers.{i}"
            add(f"{key}.0.ln.weight", stage + ("downsample_norm", "scale"), "vector", (prev,), stride)
            add(f"{key}.0.ln.bias", stage + ("downsample_norm", "bias"), "vector", (prev,), stride)
            stride *= 2
            add(f"{key}.1.kernel", stage + ("downsample_conv", "kernel"), "sparse_conv", (4, prev, dim), stride)
            add(f"{key}.1.bias", stage + ("downsample_conv", "bias"), "vector", (1, dim), stride)
        hidden, blocks = int(enc.mlp_ratio * dim), stage + ("blocks",)
        for j in range(depth):
            key = f"encoder.stages.{i}.{j}"
            entries = [
                ("dwconv.kernel", ("conv_dw", "kernel"), "sparse_dw", (k * k, dim)),
                ("dwconv.bias", ("conv_dw", "bias"), "vector", (1, dim)),
                ("norm.ln.weight", ("norm", "scale"), "vector", (dim,)),
                ("norm.ln.bias", ("norm", "bias"), "vector", (dim,)),
                ("pwconv1.linear.weight", ("fc1", "kernel"), "linear", (hidden, dim)),
                ("pwconv1.linear.bias", ("fc1", "bias"), "vector", (hidden,)),
            ]
            if enc.use_grn:
                entries += [
                    ("grn.gamma", ("grn", "weight"), "vector", (1, hidden)),
                    ("grn.beta", ("grn", "bias"), "vector", (1, hidden)),
                ]
            entries += [
                ("pwconv2.linear.weight", ("fc2", "kernel"), "linear", (dim, hidden)),
                ("pwconv2.linear.bias", ("fc2", "bias"), "vector", (dim,)),
            ]
            if enc.ls_init_value is not None:  # a V1 encoder: not in the official (V2) layout
                entries.append(("gamma", ("gamma",), "vector", (dim,)))
            for suffix, path, kind, shape in entries:
                add(f"{key}.{suffix}", blocks + path, kind, shape, stride, block=j)
    dec, dd = cfg.decoder, cfg.decoder_dim
    add("proj.weight", ("proj", "kernel"), "linear", (dd, enc.dims[-1], 1, 1), stride)
    add("proj.bias", ("proj", "bias"), "vector", (dd,), stride)
    add("mask_token", ("mask_token",), "vector", (1, dd, 1, 1), stride)
    hidden = int(dec.mlp_ratio * dd)
    for j in range(cfg.decoder_depth):
        key, blocks = f"decoder.{j}", ("decoder", "blocks")
        for suffix, path, kind, shape in [
            ("dwconv.weight", ("conv_dw", "kernel"), "dw", (dd, 1, k, k)),
            ("dwconv.bias", ("conv_dw", "bias"), "vector", (dd,)),
            ("norm.weight", ("norm", "scale"), "vector", (dd,)),
            ("norm.bias", ("norm", "bias"), "vector", (dd,)),
            ("pwconv1.weight", ("fc1", "kernel"), "linear", (hidden, dd)),
            ("pwconv1.bias", ("fc1", "bias"), "vector", (hidden,)),
            ("grn.gamma", ("grn", "weight"), "vector", (1, 1, 1, hidden)),
            ("grn.beta", ("grn", "bias"), "vector", (1, 1, 1, hidden)),
            ("pwconv2.weight", ("fc2", "kernel"), "linear", (dd, hidden)),
            ("pwconv2.bias", ("fc2", "bias"), "vector", (dd,)),
        ]:
            add(f"{key}.{suffix}", blocks + path, kind, shape, stride, block=j)
    out = cfg.patch_size**2 * enc.in_chans
    add("pred.weight", ("pred", "kernel"), "linear", (out, dd, 1, 1), stride)
    add("pred.bias", ("pred", "bias"), "vector", (out,), stride)
    return names


def model_parameter_names(model: Any) -> list[ParamName]:
    """The naming table of a model: a classifier's timm layout, or an FCMAE's official layout."""
    return fcmae_parameter_names(model.cfg) if isinstance(model.cfg, FCMAEConfig) else parameter_names(model.cfg)


def fcmae_to_official_classifier(key: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
    """One tensor of an official FCMAE checkpoint -> (key, value) in the official dense classifier
    layout, as the official fine-tuning remaps it (`main_finetune.py: remap_checkpoint_keys`), or
    None for what fine-tuning drops (decoder, mask token, projection, prediction)."""
    if not key.startswith("encoder."):
        return None
    key = key[len("encoder.") :]
    if key.endswith(".kernel"):
        if value.ndim == 3:  # (k*k, in, out) -> (out, in, k, k)
            kv, cin, cout = value.shape
            k = int(round(kv**0.5))
            value = value.transpose(2, 1, 0).reshape(cout, cin, k, k).swapaxes(-1, -2)
        elif value.ndim == 2:  # (k*k, C) -> (C, 1, k, k)
            kv, c = value.shape
            k = int(round(kv**0.5))
            value = value.transpose(1, 0).reshape(c, 1, k, k).swapaxes(-1, -2)
        key = key[: -len("kernel")] + "weight"
    key = key.replace(".ln.", ".").replace(".linear.", ".")
    if "grn" in key:
        value = value.reshape(1, 1, 1, -1)
    elif key.endswith("bias") and value.ndim == 2:
        value = value.reshape(-1)
    return key, value


def is_fcmae_checkpoint(keys: Any) -> bool:
    """Keys in the official FCMAE layout (a sparse `encoder.*` and the mask token)."""
    keys = list(keys)
    return "mask_token" in keys and any(k.startswith("encoder.downsample_layers.") for k in keys)
