"""Pretrained weights from wherever they are: a PyTorch file (timm / official), our weights
directory, or a training workdir (its latest checkpoint). One entry point for fine-tuning and
evaluation, and the architecture each source holds (so the model need not be named)."""

from __future__ import annotations

import os
from typing import Any

from convnext_jax.models.config import ConvNeXtConfig
from convnext_jax.models.fcmae import is_fcmae_config
from convnext_jax.models.naming import is_fcmae_checkpoint
from convnext_jax.train import checkpoint as checkpoints
from convnext_jax.weights import directory, pytorch, tree


def source_kind(path: str | os.PathLike) -> str:
    """'weights_dir', 'workdir' or 'pytorch'; WeightImportError when it is none of them."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise pytorch.WeightsNotFoundError(f"weights not found: {path}")
    if os.path.isdir(path):
        if directory.is_weights_dir(path):
            return "weights_dir"
        if checkpoints.is_training_workdir(path):
            return "workdir"
        raise pytorch.WeightImportError(
            f"{path} is a directory but neither a convnext_jax weights directory ({directory.CONFIG_FILE} + "
            f"{directory.PARAMS_DIR}/) nor a training workdir with checkpoints/<step>"
        )
    return "pytorch"


def read_source(path: str | os.PathLike, *, use_ema: bool = False) -> tuple[Any, Any]:
    """(the model stored at `path`, what was read to learn it): a ConvNeXtConfig (named variants
    keep their options) or an FCMAEConfig, and the file's state dict / the checkpoint's params
    (None for a weights directory). Hand the second to `load_pretrained(..., read=...)` so a large
    file is read once."""
    kind = source_kind(path)
    if kind == "weights_dir":
        return directory.load_config(path), None
    if kind == "workdir":
        params = checkpoints.read_checkpoint_params(path, use_ema=use_ema)
        return (tree.infer_fcmae_config(params) if tree.is_fcmae_tree(params) else tree.infer_config(params)), params
    state = pytorch.read_state_dict(path)
    tensors = pytorch.flat_tensors(state, use_ema=use_ema)
    if is_fcmae_checkpoint(tensors):
        return pytorch.infer_fcmae_config(tensors), state
    return pytorch.infer_config(pytorch.to_timm_layout(tensors)), state


def source_config(path: str | os.PathLike, *, use_ema: bool = False) -> Any:
    """The model stored at `path`: a ConvNeXtConfig (named variants keep their options), or an
    FCMAEConfig for FCMAE (pre-training) weights."""
    return read_source(path, use_ema=use_ema)[0]


def encoder_config(cfg: Any) -> ConvNeXtConfig:
    """The classifier architecture of a stored model: itself, or an FCMAE's encoder."""
    return cfg.encoder if is_fcmae_config(cfg) else cfg


def load_pretrained(
    model: Any, path: str | os.PathLike, *, reset_head: bool = False, use_ema: bool = False, read: Any = None
) -> str:
    """Load the weights at `path` into `model` in place (nothing is loaded when they do not fit);
    returns a one-line description of what was loaded. `read`: what `read_source(path)` read (with
    the same use_ema), so the file is not read again."""
    kind = source_kind(path)
    if kind == "weights_dir":
        tree.load_tree(model, directory.read_params(path), reset_head=reset_head, source=f"the weights in {path}")
    elif kind == "workdir":
        step = checkpoints.checkpoint_steps(path)[-1]
        params = read if read is not None else checkpoints.read_checkpoint_params(path, step, use_ema=use_ema)
        tree.load_tree(model, params, reset_head=reset_head, source=f"the weights of {path} (step {step})")
    else:
        pytorch.load_pytorch_weights(model, read if read is not None else path, reset_head=reset_head, use_ema=use_ema)
    return (
        f"initialised from {path}" + (" (EMA)" if use_ema else "") + (" with a fresh classifier" if reset_head else "")
    )
