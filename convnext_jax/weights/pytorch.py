"""PyTorch ConvNeXt state dicts (timm and the official facebookresearch layouts) <-> Flax models.

Import accepts timm key layouts and the official ConvNeXt / ConvNeXt-V2 layouts
(`downsample_layers.*`, `stages.i.j.*`, `pwconv1`, `grn.gamma`, ...), wrapped or not in
{'model': ...} / {'state_dict': ...} and with DDP / torch.compile prefixes. Every key is
accounted for: missing, unexpected and mis-shaped keys are reported together. The keys and
shapes come from the model's own naming table (`convnext_jax.models.naming`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from convnext_jax.errors import WeightImportError
from convnext_jax.models.config import ConvNeXtConfig
from convnext_jax.models.fcmae import is_fcmae_config
from convnext_jax.models.naming import (
    fcmae_to_official_classifier,
    is_fcmae_checkpoint,
    is_head_classifier,
    model_parameter_names,
    official_to_timm_key,
)
from convnext_jax.models.variants import model_config, variant_name

_WRAPPER_KEYS = ("state_dict", "model", "module")
_EMA_KEYS = ("state_dict_ema", "model_ema")
_PREFIXES = ("module.", "_orig_mod.", "model.")
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


class WeightsNotFoundError(WeightImportError, FileNotFoundError):
    """The weights file or directory does not exist."""


class WeightsExistError(WeightImportError, FileExistsError):
    """The output already exists (and overwriting was not asked for)."""


# ---------------------------------------------------------------------------------------------
# Files


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Read a .safetensors or a torch pickle (.pth/.pt/.bin/.ckpt) file, with clear errors."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsNotFoundError(f"weights file not found: {path}")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:  # torch not installed: numpy reader (no bfloat16 support)
            from safetensors.numpy import load_file
        try:
            return dict(load_file(path))
        except Exception as e:  # safetensors raises its own error types
            raise WeightImportError(f"cannot read safetensors file {path}: {e}") from e
    try:
        import torch
    except ImportError as e:
        raise WeightImportError(
            f"reading {path} needs PyTorch: pip install 'convnext-jax[torch]' (or convert it to .safetensors elsewhere)"
        ) from e
    with open(path, "rb") as f:
        head = f.read(2)
    if head != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip archive (or, before 1.6, a pickle)
        raise WeightImportError(
            f"{path} is not a PyTorch checkpoint: torch.save writes a zip archive or a pickle, "
            "and this file is neither. Give a .pth/.pt/.bin written by torch.save, or a "
            ".safetensors file"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "Weights only load failed" in reason:  # torch's advice to unpickle arbitrary code: not ours to give
            reason = "it holds Python objects besides tensors, which are not unpickled (weights_only loading)"
        raise WeightImportError(
            f"cannot read {path} as a PyTorch checkpoint (.pth/.pt/.bin written by torch.save, "
            f"or .safetensors): {reason[:200]}"
        ) from e


def _default_permissions(path: str) -> None:
    """Give `path` the mode a new file gets here (0666 less the umask), as other files have."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_state_dict(tensors: Mapping[str, np.ndarray], path: str) -> None:
    """Write a timm-layout state dict as .safetensors (no torch needed) or .pth (torch)."""
    if path.endswith(".safetensors"):
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path)
        _default_permissions(path)  # safetensors writes through a private temp file (mode 0600)
    elif path.endswith(TORCH_SUFFIXES):
        import torch

        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}, path)
    else:
        raise WeightImportError(f"unknown output format for {path}: use .safetensors or .pth")


# ---------------------------------------------------------------------------------------------
# Layouts


def _unwrap(state: Mapping[str, Any], use_ema: bool) -> Mapping[str, Any]:
    """Find the tensor dict inside training checkpoints ({'model': ..., 'state_dict_ema': ...})."""
    if use_ema:
        for key in _EMA_KEYS:
            if isinstance(state.get(key), Mapping):
                return _unwrap(state[key], use_ema=False)
        raise WeightImportError(
            f"use_ema=True but the checkpoint has no {' / '.join(map(repr, _EMA_KEYS))} entry "
            f"(top-level keys: {sorted(state)[:10]})"
        )
    for _ in range(3):
        inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = inner
    return state


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def flat_tensors(state: Mapping[str, Any], *, use_ema: bool = False) -> dict[str, np.ndarray]:
    """The tensors of a state dict as numpy arrays, unwrapped and without DDP/compile prefixes."""
    state = _unwrap(state, use_ema)
    return {
        _strip_prefixes(k): _to_numpy(v)
        for k, v in state.items()
        if not k.endswith("num_batches_tracked") and hasattr(v, "shape")
    }  # skip non-tensor metadata


def to_timm_layout(state: Mapping[str, Any], *, use_ema: bool = False) -> dict[str, np.ndarray]:
    """Any supported PyTorch ConvNeXt classifier state dict -> {timm key: numpy array}. An official
    FCMAE checkpoint gives its encoder, remapped as the official fine-tuning does (no head, no
    final norm)."""
    flat = flat_tensors(state, use_ema=use_ema)
    if is_fcmae_checkpoint(flat):
        flat = dict(filter(None, (fcmae_to_official_classifier(k, v) for k, v in flat.items())))
    official = any(k.startswith("downsample_layers.") for k in flat)
    return {official_to_timm_key(k) if official else k: v for k, v in flat.items()}


def _is_fcmae(model: Any) -> bool:
    from convnext_jax.models.fcmae import FCMAEConfig

    return isinstance(model.cfg, FCMAEConfig)


def _compatible(kind: str, got: tuple[int, ...], want: tuple[int, ...]) -> bool:
    if got == want:
        return True
    if kind == "linear":  # Linear (out,in) vs 1x1 conv (out,in,1,1)
        return got[:2] == want[:2] and all(s == 1 for s in got[2:] + want[2:])
    if kind == "vector":  # official GRN gamma/beta are (1,1,1,C)
        return int(np.prod(got)) == want[0] and max(got) == want[0]
    return False


def _torch_to_flax(kind: str, value: np.ndarray) -> np.ndarray:
    if kind in ("conv", "dw"):  # OIHW -> HWIO (depthwise: (C, 1, k, k) -> (k, k, 1, C))
        return value.transpose(2, 3, 1, 0)
    if kind == "sparse_conv":  # MinkowskiEngine (k*k, in, out), offset index w*k + h -> HWIO
        k = int(round(value.shape[0] ** 0.5))
        return value.reshape((k, k) + value.shape[1:]).transpose(1, 0, 2, 3)
    if kind == "sparse_dw":  # (k*k, C) -> (k, k, 1, C)
        k = int(round(value.shape[0] ** 0.5))
        return value.reshape(k, k, value.shape[1]).transpose(1, 0, 2)[:, :, None, :]
    if kind == "linear":
        return value.reshape(value.shape[:2]).T
    return value.reshape(-1)


def _flax_to_torch(kind: str, value: np.ndarray, torch_shape: tuple[int, ...]) -> np.ndarray:
    if kind in ("conv", "dw"):
        return np.ascontiguousarray(value.transpose(3, 2, 0, 1))
    if kind == "sparse_conv":
        return np.ascontiguousarray(value.transpose(1, 0, 2, 3)).reshape(torch_shape)
    if kind == "sparse_dw":
        return np.ascontiguousarray(value[:, :, 0, :].transpose(1, 0, 2)).reshape(torch_shape)
    if kind == "linear":
        return np.ascontiguousarray(value.T).reshape(torch_shape)
    return value.reshape(torch_shape)


def format_problems(missing: list[str], unexpected: list[str], mismatched: list[str], limit: int = 8) -> str:
    """The missing, unexpected and mis-shaped names, a few of each with the count of the rest."""
    lines = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            shown = items[:limit] + ([f"... and {len(items) - limit} more"] if len(items) > limit else [])
            lines.append(f"{title} ({len(items)}):\n  " + "\n  ".join(shown))
    return "\n".join(lines)


def describe(cfg: Any) -> str:
    """One line naming the architecture (and its registered variant, if any)."""
    if is_fcmae_config(cfg):
        return (
            f"FCMAE of {describe(cfg.encoder)} (decoder {cfg.decoder_depth} x {cfg.decoder_dim}, "
            f"patch {cfg.patch_size})"
        )
    name = variant_name(cfg)
    return (
        f"{name + ' ' if name else ''}(ConvNeXt V{cfg.version} depths={cfg.depths} dims={cfg.dims} "
        f"num_classes={cfg.num_classes})"
    )


def _fit_hint(
    model: Any, tensors: Mapping[str, np.ndarray], missing: list[str], unexpected: list[str], mismatched: list[str]
) -> str:
    if _is_fcmae(model):
        if not is_fcmae_checkpoint(tensors):
            decoder = [m for m in missing if not m.startswith("encoder.")][:4]
            return (
                f"\nThis is not an FCMAE checkpoint (no decoder: {', '.join(decoder)} ...): a classifier's weights "
                "load into a classifier (create_model); pre-training starts from an official FCMAE checkpoint "
                "(convnextv2_*_fcmae.pt) or from scratch."
            )
        return ""
    model_cfg = model.cfg
    try:
        found = infer_config(tensors)
    except WeightImportError:
        found = None
    if found is not None and (found.depths, found.dims, found.use_grn) != (
        model_cfg.depths,
        model_cfg.dims,
        model_cfg.use_grn,
    ):
        return (
            f"\nThe checkpoint holds {describe(found)}: build that model (config model.name, or leave it "
            "empty to take the checkpoint's architecture)."
        )
    head_problems = [m.split(":")[0] for m in missing + mismatched] + unexpected
    if any(map(is_head_classifier, head_problems)):
        return (
            "\nThe classifier does not match (different num_classes?): pass reset_head=True "
            "(--reset_head, config model.reset_head) to keep a freshly initialised head for fine-tuning."
        )
    if missing and not unexpected and not mismatched and all(m.startswith("head.") for m in missing):
        return "\nThe checkpoint has no head (FCMAE/feature weights?): pass reset_head=True for a new classifier."
    return ""


def load_pytorch_weights(
    model: Any,
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
    *,
    reset_head: bool = False,
    use_ema: bool = False,
) -> list[str]:
    """Load timm or official PyTorch ConvNeXt weights into `model` in place.

    Args:
      model: the Flax model; its config decides the expected keys and shapes.
      path_or_state_dict: a .pth/.pt/.bin/.safetensors path or an in-memory state dict.
      reset_head: keep the model's freshly initialised classifier (`head_fc`) instead of
        the checkpoint's, for fine-tuning with a different class count.
      use_ema: take the EMA weights of a training checkpoint.
    Returns the timm keys that were loaded. Raises WeightImportError listing every missing,
    unexpected and mis-shaped key when the checkpoint does not fit; nothing is loaded then.
    """
    source = (
        read_state_dict(path_or_state_dict)
        if isinstance(path_or_state_dict, (str, os.PathLike))
        else path_or_state_dict
    )
    all_names = model_parameter_names(model)
    if _is_fcmae(model):
        tensors = flat_tensors(source, use_ema=use_ema)
        fresh = lambda key: False  # noqa: E731 (an FCMAE model has no head to keep)
    else:
        from_fcmae = is_fcmae_checkpoint(flat_tensors(source, use_ema=use_ema))
        if from_fcmae and not reset_head:
            raise WeightImportError(
                "this is an FCMAE (pre-training) checkpoint: it has no classifier and no final norm. "
                "Load it into a classifier with reset_head=True (config model.reset_head), which "
                "keeps both fresh as the official fine-tuning does"
            )
        tensors = to_timm_layout(source, use_ema=use_ema)
        fresh = (
            (lambda key: key.startswith("head."))
            if from_fcmae
            else (lambda key: reset_head and is_head_classifier(key))
        )
    names = [n for n in all_names if not fresh(n.torch_key)]
    expected = {n.torch_key for n in all_names}
    missing, mismatched = [], []
    for name in names:
        if name.torch_key not in tensors:
            missing.append(name.torch_key)
        elif not _compatible(name.kind, tuple(tensors[name.torch_key].shape), name.torch_shape):
            mismatched.append(
                f"{name.torch_key}: checkpoint {tuple(tensors[name.torch_key].shape)}, model {name.torch_shape}"
            )
    unexpected = sorted(k for k in tensors if k not in expected and not fresh(k))
    if missing or unexpected or mismatched:
        raise WeightImportError(
            f"checkpoint does not fit the model {describe(model.cfg)}:\n"
            f"{format_problems(missing, unexpected, mismatched)}"
            f"{_fit_hint(model, tensors, missing, unexpected, mismatched)}"
        )

    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    stacked: dict[tuple[Any, ...], list[np.ndarray | None]] = {}
    for name in names:
        value = _torch_to_flax(name.kind, tensors[name.torch_key])
        if name.block is None:
            assign(flat[name.path], value)
        else:
            stacked.setdefault(name.path, [None] * flat[name.path][...].shape[0])[name.block] = value
    for path, values in stacked.items():
        assign(flat[path], np.stack(values))
    return [n.torch_key for n in names]


def assign(variable: nnx.Variable, value: np.ndarray) -> None:
    """Set a parameter from a host array of the same shape (a copy, in the parameter's dtype)."""
    current = variable[...]
    if tuple(current.shape) != tuple(value.shape):  # guarded by the callers' shape checks
        raise WeightImportError(f"internal layout error: {value.shape} vs {current.shape}")
    # Copy: on CPU, jax may alias a NumPy buffer, and this one can share memory with a torch
    # tensor that an optimizer later updates in place.
    variable[...] = jnp.asarray(np.array(value, dtype=current.dtype, copy=True))


def export_pytorch_weights(model: Any) -> dict[str, np.ndarray]:
    """The model's weights as a timm-layout state dict of float32 numpy arrays.

    `timm.create_model(name, num_classes=...).load_state_dict({k: torch.from_numpy(v) ...})`
    loads it with strict=True.
    """
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    out = {}
    for name in model_parameter_names(model):
        value = np.array(flat[name.path][...], dtype=np.float32)
        if name.block is not None:
            value = value[name.block]
        out[name.torch_key] = _flax_to_torch(name.kind, value, name.torch_shape)
    return out


# ---------------------------------------------------------------------------------------------
# Architecture inference (so that no --model / model.name is needed for standard checkpoints)


def infer_config(tensors: Mapping[str, np.ndarray]) -> ConvNeXtConfig:
    """Recover the architecture from a timm-layout state dict; named variants keep their options."""
    if "stem.0.weight" not in tensors:
        raise WeightImportError("not a ConvNeXt checkpoint: no 'stem.0.weight' / 'downsample_layers.0.0.weight'")
    try:
        return _infer_config(tensors)
    except (KeyError, ValueError) as e:
        raise WeightImportError(
            f"cannot infer the architecture from this checkpoint ({e}); name the model "
            "(--model NAME, config model.name)"
        ) from e


def _infer_config(tensors: Mapping[str, np.ndarray]) -> ConvNeXtConfig:
    stem = tensors["stem.0.weight"]
    depths, dims = [], []
    i = 0
    while any(k.startswith(f"stages.{i}.") for k in tensors):
        blocks = {int(m.group(1)) for k in tensors if (m := re.match(rf"stages\.{i}\.blocks\.(\d+)\.", k))}
        depths.append(max(blocks) + 1 if blocks else 0)
        dims.append(int(tensors[f"stages.{i}.blocks.0.conv_dw.weight"].shape[0]))
        i += 1
    use_grn = any(".mlp.grn." in k for k in tensors)
    fields = dict(
        depths=tuple(depths),
        dims=tuple(dims),
        use_grn=use_grn,
        ls_init_value=1e-6 if any(k.endswith(".gamma") for k in tensors) else None,
        conv_mlp=tensors["stages.0.blocks.0.mlp.fc1.weight"].ndim == 4,
        kernel_size=int(tensors["stages.0.blocks.0.conv_dw.weight"].shape[-1]),
        patch_size=int(stem.shape[-1]),
        in_chans=int(stem.shape[1]),
        mlp_ratio=tensors["stages.0.blocks.0.mlp.fc1.weight"].shape[0] / dims[0],
        num_classes=int(tensors["head.fc.weight"].shape[0]) if "head.fc.weight" in tensors else 0,
    )
    custom = ConvNeXtConfig(**fields)
    name = variant_name(custom)
    # A named variant exports in timm's layout for that name, whatever layout the source used.
    return model_config(name, num_classes=custom.num_classes) if name else custom


def infer_fcmae_config(tensors: Mapping[str, np.ndarray]) -> Any:
    """The FCMAEConfig of an official-layout FCMAE state dict (GRN statistics over the batch, as the
    official sparse encoder computes them)."""
    from convnext_jax.models.fcmae import FCMAEConfig

    if not is_fcmae_checkpoint(tensors):
        raise WeightImportError("not an FCMAE checkpoint: no 'mask_token' and 'encoder.downsample_layers.*'")
    encoder = infer_config(to_timm_layout(tensors)).replace(num_classes=0, grn_stats="batch")
    decoder_blocks = {int(k.split(".")[1]) for k in tensors if k.startswith("decoder.")}
    patch = int(round((tensors["pred.weight"].shape[0] / encoder.in_chans) ** 0.5))
    return FCMAEConfig(
        encoder=encoder,
        decoder_dim=int(tensors["proj.weight"].shape[0]),
        decoder_depth=len(decoder_blocks),
        patch_size=patch,
    )
