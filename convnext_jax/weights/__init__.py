"""Weights in and out of the models: PyTorch layouts (timm, official), our own weights
directory, the weights in training checkpoints, and the `convert` command line."""

from convnext_jax.train.checkpoint import checkpoint_steps, read_checkpoint_params
from convnext_jax.weights.directory import is_weights_dir, load_config, load_weights, read_params, save_weights
from convnext_jax.weights.load import encoder_config, load_pretrained, source_config, source_kind
from convnext_jax.weights.pytorch import (
    WeightImportError,
    export_pytorch_weights,
    infer_config,
    load_pytorch_weights,
    read_state_dict,
    to_timm_layout,
    variant_name,
    write_state_dict,
)
from convnext_jax.weights.tree import load_tree

__all__ = [
    "WeightImportError",
    "checkpoint_steps",
    "encoder_config",
    "export_pytorch_weights",
    "infer_config",
    "is_weights_dir",
    "load_config",
    "load_pretrained",
    "load_pytorch_weights",
    "load_tree",
    "load_weights",
    "read_checkpoint_params",
    "read_params",
    "read_state_dict",
    "save_weights",
    "source_config",
    "source_kind",
    "to_timm_layout",
    "variant_name",
    "write_state_dict",
]
