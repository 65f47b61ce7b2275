"""PyTorch (timm / official facebookresearch) <-> Flax ConvNeXt weights.

    python -m convnext_jax.convert SRC.pth|SRC.safetensors DST_DIR [--model NAME] [--num-classes N]
    python -m convnext_jax.convert SRC_DIR DST.safetensors|DST.pth        # export back to timm layout

Import accepts timm key layouts and the official ConvNeXt / ConvNeXt-V2 layouts
(`downsample_layers.*`, `stages.i.j.*`, `pwconv1`, `grn.gamma`, ...), wrapped or not in
{'model': ...} / {'state_dict': ...} and with DDP / torch.compile prefixes. Every key is
accounted for: missing, unexpected and mis-shaped keys are reported together.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
from typing import Any, Iterable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from convnext_jax.models import ConvNeXt, ConvNeXtConfig, VARIANTS, build_model, model_config

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model", "module")
_EMA_KEYS = ("state_dict_ema", "model_ema")
_PREFIXES = ("module.", "_orig_mod.", "model.")


class WeightImportError(ValueError):
    """Raised when a PyTorch state dict does not fit the Flax model."""


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One PyTorch tensor <-> one Flax parameter (or one block's slice of a stacked one)."""

    torch_key: str
    flax_path: tuple[Any, ...]
    block: int | None  # index into the stacked block axis, None for unstacked params
    kind: str  # 'conv' (OIHW<->HWIO), 'dw' (C1kk<->kk1C), 'linear' (out,in[,1,1]<->in,out), 'vector'
    torch_shape: tuple[int, ...]


def _conv_shape(out_c: int, in_c: int, k: int) -> tuple[int, ...]:
    return (out_c, in_c, k, k)


def param_specs(cfg: ConvNeXtConfig) -> list[ParamSpec]:
    """The timm-layout state dict of a model with this config, key by key."""
    specs: list[ParamSpec] = []

    def add(key: str, path: tuple[Any, ...], kind: str, shape: tuple[int, ...], block: int | None = None) -> None:
        specs.append(ParamSpec(key, path, block, kind, shape))

    def norm(key: str, path: tuple[Any, ...], dim: int) -> None:
        add(f"{key}.weight", path + ("scale",), "vector", (dim,))
        add(f"{key}.bias", path + ("bias",), "vector", (dim,))

    d0 = cfg.dims[0]
    add("stem.0.weight", ("stem_conv", "kernel"), "conv", _conv_shape(d0, cfg.in_chans, cfg.patch_size))
    add("stem.0.bias", ("stem_conv", "bias"), "vector", (d0,))
    norm("stem.1", ("stem_norm",), d0)
    linear_suffix = (1, 1) if cfg.conv_mlp else ()
    for i, (depth, dim) in enumerate(zip(cfg.depths, cfg.dims)):
        stage = ("stages", i)
        if i > 0:
            prev = cfg.dims[i - 1]
            norm(f"stages.{i}.downsample.0", stage + ("downsample_norm",), prev)
            add(f"stages.{i}.downsample.1.weight", stage + ("downsample_conv", "kernel"), "conv",
                _conv_shape(dim, prev, 2))
            add(f"stages.{i}.downsample.1.bias", stage + ("downsample_conv", "bias"), "vector", (dim,))
        hidden = int(cfg.mlp_ratio * dim)
        blocks = stage + ("blocks",)
        for j in range(depth):
            key = f"stages.{i}.blocks.{j}"
            add(f"{key}.conv_dw.weight", blocks + ("conv_dw", "kernel"), "dw",
                (dim, 1, cfg.kernel_size, cfg.kernel_size), j)
            add(f"{key}.conv_dw.bias", blocks + ("conv_dw", "bias"), "vector", (dim,), j)
            add(f"{key}.norm.weight", blocks + ("norm", "scale"), "vector", (dim,), j)
            add(f"{key}.norm.bias", blocks + ("norm", "bias"), "vector", (dim,), j)
            add(f"{key}.mlp.fc1.weight", blocks + ("fc1", "kernel"), "linear", (hidden, dim) + linear_suffix, j)
            add(f"{key}.mlp.fc1.bias", blocks + ("fc1", "bias"), "vector", (hidden,), j)
            if cfg.use_grn:
                add(f"{key}.mlp.grn.weight", blocks + ("grn", "weight"), "vector", (hidden,), j)
                add(f"{key}.mlp.grn.bias", blocks + ("grn", "bias"), "vector", (hidden,), j)
            add(f"{key}.mlp.fc2.weight", blocks + ("fc2", "kernel"), "linear", (dim, hidden) + linear_suffix, j)
            add(f"{key}.mlp.fc2.bias", blocks + ("fc2", "bias"), "vector", (dim,), j)
            if cfg.ls_init_value is not None:
                add(f"{key}.gamma", blocks + ("gamma",), "vector", (dim,), j)
    norm("head.norm", ("head_norm",), cfg.dims[-1])
    if cfg.num_classes > 0:
        add("head.fc.weight", ("head_fc", "kernel"), "linear", (cfg.num_classes, cfg.dims[-1]))
        add("head.fc.bias", ("head_fc", "bias"), "vector", (cfg.num_classes,))
    return specs


# ---------------------------------------------------------------------------------------------
# Reading and normalising PyTorch state dicts


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
        raise FileNotFoundError(f"weights file not found: {path}")
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
        raise ImportError(f"reading {path} needs PyTorch: pip install 'convnext-jax[torch]' "
                          "(or convert it to .safetensors elsewhere)") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightImportError(f"cannot read PyTorch checkpoint {path}: {e}") from e


def _unwrap(state: Mapping[str, Any], use_ema: bool) -> Mapping[str, Any]:
    """Find the tensor dict inside training checkpoints ({'model': ..., 'state_dict_ema': ...})."""
    if use_ema:
        for key in _EMA_KEYS:
            if isinstance(state.get(key), Mapping):
                return _unwrap(state[key], use_ema=False)
        raise WeightImportError(f"use_ema=True but the checkpoint has no {' / '.join(map(repr, _EMA_KEYS))} entry "
                                f"(top-level keys: {sorted(state)[:10]})")
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
                key, changed = key[len(prefix):], True
    return key


def _official_to_timm_key(key: str) -> str:
    """facebookresearch ConvNeXt / ConvNeXt-V2 names -> timm names (as timm's checkpoint_filter_fn)."""
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


def to_timm_layout(state: Mapping[str, Any], *, use_ema: bool = False) -> dict[str, np.ndarray]:
    """Any supported PyTorch ConvNeXt state dict -> {timm key: numpy array}."""
    state = _unwrap(state, use_ema)
    flat = {_strip_prefixes(k): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    official = any(k.startswith("downsample_layers.") for k in flat)
    out = {}
    for key, value in flat.items():
        if not hasattr(value, "shape"):
            continue  # non-tensor metadata (epoch counters, args)
        out[_official_to_timm_key(key) if official else key] = _to_numpy(value)
    return out


# ---------------------------------------------------------------------------------------------
# Import


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
    if kind == "linear":
        return value.reshape(value.shape[:2]).T
    return value.reshape(-1)


def _flax_to_torch(kind: str, value: np.ndarray, torch_shape: tuple[int, ...]) -> np.ndarray:
    if kind in ("conv", "dw"):
        return np.ascontiguousarray(value.transpose(3, 2, 0, 1))
    if kind == "linear":
        return np.ascontiguousarray(value.T).reshape(torch_shape)
    return value.reshape(torch_shape)


def _is_head_fc(key: str) -> bool:
    return key.startswith("head.fc.")


def _format_problems(missing: list[str], unexpected: list[str], mismatched: list[str]) -> str:
    lines = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            shown = items[:20] + ([f"... and {len(items) - 20} more"] if len(items) > 20 else [])
            lines.append(f"{title} ({len(items)}):\n  " + "\n  ".join(shown))
    return "\n".join(lines)


def load_pytorch_weights(model: ConvNeXt, path_or_state_dict: str | os.PathLike | Mapping[str, Any], *,
                         reset_head: bool = False, use_ema: bool = False) -> list[str]:
    """Load timm or official PyTorch ConvNeXt weights into `model` in place.

    Args:
      model: the Flax model; its config decides the expected keys and shapes.
      path_or_state_dict: a .pth/.pt/.bin/.safetensors path or an in-memory state dict.
      reset_head: keep the model's freshly initialised classifier (`head_fc`) instead of
        the checkpoint's, for fine-tuning with a different class count.
      use_ema: take the EMA weights of a training checkpoint.
    Returns the timm keys that were loaded. Raises WeightImportError listing every missing,
    unexpected and mis-shaped key when the checkpoint does not fit.
    """
    source = read_state_dict(path_or_state_dict) if isinstance(path_or_state_dict, (str, os.PathLike)) \
        else path_or_state_dict
    tensors = to_timm_layout(source, use_ema=use_ema)
    specs = param_specs(model.cfg)
    expected = {s.torch_key for s in specs}
    missing, mismatched = [], []
    for spec in specs:
        if reset_head and _is_head_fc(spec.torch_key):
            continue
        if spec.torch_key not in tensors:
            missing.append(spec.torch_key)
        elif not _compatible(spec.kind, tuple(tensors[spec.torch_key].shape), spec.torch_shape):
            mismatched.append(f"{spec.torch_key}: checkpoint {tuple(tensors[spec.torch_key].shape)}, "
                              f"model {spec.torch_shape}")
    unexpected = sorted(k for k in tensors if k not in expected and not (reset_head and _is_head_fc(k)))
    if missing or unexpected or mismatched:
        hint = ""
        if any(_is_head_fc(m.split(":")[0]) for m in missing + mismatched) or any(map(_is_head_fc, unexpected)):
            hint = ("\nThe classifier does not match (different num_classes?): pass reset_head=True "
                    "(--reset-head) to keep a freshly initialised head for fine-tuning.")
        elif missing and not unexpected and not mismatched and all(m.startswith("head.") for m in missing):
            hint = "\nThe checkpoint has no head (FCMAE/feature weights?): pass reset_head=True for a new classifier."
        raise WeightImportError(f"checkpoint does not fit {_describe(model.cfg)}:\n"
                                f"{_format_problems(missing, unexpected, mismatched)}{hint}")

    state = nnx.state(model, nnx.Param)
    flat = dict(nnx.to_flat_state(state))
    stacked: dict[tuple[Any, ...], list[np.ndarray | None]] = {}
    loaded = []
    for spec in specs:
        if reset_head and _is_head_fc(spec.torch_key):
            continue
        value = _torch_to_flax(spec.kind, tensors[spec.torch_key])
        if spec.block is None:
            _assign(flat[spec.flax_path], value)
        else:
            stacked.setdefault(spec.flax_path, [None] * flat[spec.flax_path][...].shape[0])[spec.block] = value
        loaded.append(spec.torch_key)
    for path, values in stacked.items():
        _assign(flat[path], np.stack(values))
    if reset_head and model.head_fc is not None:
        log.warning("reset_head=True: classifier head_fc (%d classes) keeps its fresh initialisation; "
                    "all other weights loaded from the checkpoint", model.cfg.num_classes)
    return loaded


def _assign(variable: nnx.Variable, value: np.ndarray) -> None:
    current = variable[...]
    if tuple(current.shape) != tuple(value.shape):  # guarded by the shape checks above
        raise WeightImportError(f"internal layout error: {value.shape} vs {current.shape}")
    # Copy: on CPU, jax may alias a NumPy buffer, and this one can share memory with a torch
    # tensor that an optimizer later updates in place.
    variable[...] = jnp.asarray(np.array(value, dtype=current.dtype, copy=True))


def _describe(cfg: ConvNeXtConfig) -> str:
    return (f"ConvNeXt V{cfg.version} depths={cfg.depths} dims={cfg.dims} num_classes={cfg.num_classes} "
            f"({'1x1-conv' if cfg.conv_mlp else 'linear'} MLP layout)")


# ---------------------------------------------------------------------------------------------
# Export


def export_pytorch_weights(model: ConvNeXt) -> dict[str, np.ndarray]:
    """The model's weights as a timm-layout state dict of float32 numpy arrays.

    `timm.create_model(name, num_classes=...).load_state_dict({k: torch.from_numpy(v) ...})`
    loads it with strict=True.
    """
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    out = {}
    for spec in param_specs(model.cfg):
        value = np.array(flat[spec.flax_path][...], dtype=np.float32)
        if spec.block is not None:
            value = value[spec.block]
        out[spec.torch_key] = _flax_to_torch(spec.kind, value, spec.torch_shape)
    return out


# ---------------------------------------------------------------------------------------------
# Architecture inference (so the CLI needs no --model for standard checkpoints)


def infer_config(tensors: Mapping[str, np.ndarray]) -> ConvNeXtConfig:
    """Recover the architecture from a timm-layout state dict; named variants keep their options."""
    if "stem.0.weight" not in tensors:
        raise WeightImportError("not a ConvNeXt checkpoint: no 'stem.0.weight' / 'downsample_layers.0.0.weight'")
    try:
        return _infer_config(tensors)
    except (KeyError, ValueError) as e:
        raise WeightImportError(f"cannot infer the architecture from this checkpoint ({e}); pass --model NAME") from e


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
    fields = dict(depths=tuple(depths), dims=tuple(dims), use_grn=use_grn,
                  ls_init_value=1e-6 if any(k.endswith(".gamma") for k in tensors) else None,
                  conv_mlp=tensors["stages.0.blocks.0.mlp.fc1.weight"].ndim == 4,
                  kernel_size=int(tensors["stages.0.blocks.0.conv_dw.weight"].shape[-1]),
                  patch_size=int(stem.shape[-1]), in_chans=int(stem.shape[1]),
                  mlp_ratio=tensors["stages.0.blocks.0.mlp.fc1.weight"].shape[0] / dims[0],
                  num_classes=int(tensors["head.fc.weight"].shape[0]) if "head.fc.weight" in tensors else 0)
    custom = ConvNeXtConfig(**fields)
    name = variant_name(custom)
    # A named variant exports in timm's layout for that name, whatever layout the source used.
    return model_config(name, num_classes=custom.num_classes) if name else custom


def variant_name(cfg: ConvNeXtConfig) -> str | None:
    """The registered name whose architecture equals `cfg`, if any."""
    for name, variant in VARIANTS.items():
        if (tuple(variant["depths"]), tuple(variant["dims"]), variant.get("use_grn", False)) == \
                (cfg.depths, cfg.dims, cfg.use_grn):
            return name
    return None


# ---------------------------------------------------------------------------------------------
# Command line


def _parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m convnext_jax.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="PyTorch .pth/.pt/.bin/.safetensors file, or a Flax weights directory")
    parser.add_argument("dst", help="output: a directory (Flax/orbax) or a .safetensors/.pth file (timm layout)")
    parser.add_argument("--model", help="variant name (default: inferred from the checkpoint)")
    parser.add_argument("--num-classes", type=int, help="classifier size (default: from the checkpoint)")
    parser.add_argument("--reset-head", action="store_true", help="do not import the classifier (fine-tuning)")
    parser.add_argument("--use-ema", action="store_true", help="import the EMA weights of a training checkpoint")
    parser.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    return parser.parse_args(None if argv is None else list(argv))


def main(argv: Iterable[str] | None = None) -> int:
    """Convert between PyTorch files and Flax (orbax) weight directories."""
    from convnext_jax import flax_weights  # orbax import only for the CLI

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parse_args(argv)
    if os.path.exists(args.dst) and not args.force:
        print(f"error: {args.dst} exists; pass --force to overwrite", file=sys.stderr)
        return 2
    try:
        if os.path.isdir(args.src):
            model = flax_weights.load_model(args.src)
            tensors = export_pytorch_weights(model)
            write_state_dict(tensors, args.dst)
            print(f"exported {len(tensors)} tensors ({_describe(model.cfg)}) to {args.dst}")
            return 0
        tensors = to_timm_layout(read_state_dict(args.src), use_ema=args.use_ema)
        cfg = model_config(args.model) if args.model else infer_config(tensors)
        if args.num_classes is not None:
            cfg = cfg.replace(num_classes=args.num_classes)
        elif args.model and "head.fc.weight" in tensors:
            cfg = cfg.replace(num_classes=int(tensors["head.fc.weight"].shape[0]))
        model = build_model(cfg)
        load_pytorch_weights(model, tensors, reset_head=args.reset_head)
        flax_weights.save_model(model, args.dst, overwrite=args.force)
        print(f"converted {args.src} -> {args.dst}: {_describe(cfg)}"
              + (f" [{variant_name(cfg)}]" if variant_name(cfg) else ""))
        return 0
    except (WeightImportError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def write_state_dict(tensors: Mapping[str, np.ndarray], path: str) -> None:
    """Write a timm-layout state dict as .safetensors (no torch needed) or .pth (torch)."""
    if path.endswith(".safetensors"):
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path)
    elif path.endswith((".pth", ".pt", ".bin")):
        import torch

        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}, path)
    else:
        raise ValueError(f"unknown output format for {path}: use .safetensors or .pth")


if __name__ == "__main__":
    sys.exit(main())
