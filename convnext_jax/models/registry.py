"""Named ConvNeXt variants (timm's names and definitions) and `create_model`."""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any

import jax
from flax import nnx

from convnext_jax.models.config import ConvNeXtConfig, scale_architecture
from convnext_jax.models.convnext import ConvNeXt

_SMALL_DEPTHS = (2, 2, 6, 2)
_DEEP = (3, 3, 27, 3)
_V2 = dict(use_grn=True, ls_init_value=None)

# Same depths/dims/options as timm's @register_model functions of the same name.
VARIANTS: dict[str, dict[str, Any]] = {
    "convnext_atto": dict(depths=_SMALL_DEPTHS, dims=(40, 80, 160, 320), conv_mlp=True),
    "convnext_femto": dict(depths=_SMALL_DEPTHS, dims=(48, 96, 192, 384), conv_mlp=True),
    "convnext_pico": dict(depths=_SMALL_DEPTHS, dims=(64, 128, 256, 512), conv_mlp=True),
    "convnext_nano": dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640), conv_mlp=True),
    "convnext_tiny": dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
    "convnext_small": dict(depths=_DEEP, dims=(96, 192, 384, 768)),
    "convnext_base": dict(depths=_DEEP, dims=(128, 256, 512, 1024)),
    "convnext_large": dict(depths=_DEEP, dims=(192, 384, 768, 1536)),
    "convnext_xlarge": dict(depths=_DEEP, dims=(256, 512, 1024, 2048)),
    "convnext_xxlarge": dict(depths=(3, 4, 30, 3), dims=(384, 768, 1536, 3072), norm_eps=1e-5),
    "convnextv2_atto": dict(depths=_SMALL_DEPTHS, dims=(40, 80, 160, 320), conv_mlp=True, **_V2),
    "convnextv2_femto": dict(depths=_SMALL_DEPTHS, dims=(48, 96, 192, 384), conv_mlp=True, **_V2),
    "convnextv2_pico": dict(depths=_SMALL_DEPTHS, dims=(64, 128, 256, 512), conv_mlp=True, **_V2),
    "convnextv2_nano": dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640), conv_mlp=True, **_V2),
    "convnextv2_tiny": dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), **_V2),
    "convnextv2_small": dict(depths=_DEEP, dims=(96, 192, 384, 768), **_V2),
    "convnextv2_base": dict(depths=_DEEP, dims=(128, 256, 512, 1024), **_V2),
    "convnextv2_large": dict(depths=_DEEP, dims=(192, 384, 768, 1536), **_V2),
    "convnextv2_huge": dict(depths=_DEEP, dims=(352, 704, 1408, 2816), **_V2),
}


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered variants matching a shell-style pattern, e.g. 'convnextv2_*'."""
    return sorted(name for name in VARIANTS if fnmatch.fnmatch(name, pattern))


def _unknown_name_error(name: str) -> ValueError:
    close = difflib.get_close_matches(name, VARIANTS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ValueError(f"unknown model {name!r}.{hint} Valid names: {', '.join(list_models())}")


def model_config(name: str, *, depth_multiplier: float = 1.0, width_multiplier: float = 1.0,
                 **overrides: Any) -> ConvNeXtConfig:
    """The config of variant `name`, scaled (see `scale_architecture`), with field overrides."""
    if name not in VARIANTS:
        raise _unknown_name_error(name)
    fields = dict(VARIANTS[name])
    fields["depths"], fields["dims"] = scale_architecture(
        overrides.pop("depths", fields["depths"]), overrides.pop("dims", fields["dims"]),
        depth_multiplier, width_multiplier)
    unknown = set(overrides) - set(ConvNeXtConfig.__dataclass_fields__)
    if unknown:
        valid = ", ".join(sorted(ConvNeXtConfig.__dataclass_fields__))
        raise TypeError(f"unknown model option(s) {sorted(unknown)}; valid options: {valid}")
    fields.update(overrides)
    return ConvNeXtConfig(**fields)


def create_model(name: str, *, num_classes: int = 1000, drop_path_rate: float = 0.0, dtype: Any = "float32",
                 rngs: nnx.Rngs | int | None = None, depth_multiplier: float = 1.0, width_multiplier: float = 1.0,
                 **overrides: Any) -> ConvNeXt:
    """Build a named ConvNeXt variant.

    Args:
      name: one of `list_models()` (timm's names, e.g. 'convnext_tiny', 'convnextv2_atto').
      num_classes: classifier size; 0 builds a feature extractor without `head_fc`.
      drop_path_rate: stochastic depth rate of the last block (linear from 0).
      dtype: compute dtype ('float32' or 'bfloat16'); parameters stay fp32.
      rngs: `nnx.Rngs` or an int seed for parameter init (default seed 0).
      depth_multiplier, width_multiplier: the scaling rule of `scale_architecture`.
      **overrides: any other `ConvNeXtConfig` field (depths, dims, remat, scan_blocks, ...).
    """
    cfg = model_config(name, depth_multiplier=depth_multiplier, width_multiplier=width_multiplier,
                       num_classes=num_classes, drop_path_rate=drop_path_rate, dtype=jax.numpy.dtype(dtype).name,
                       **overrides)
    return build_model(cfg, rngs)


def build_model(cfg: ConvNeXtConfig, rngs: nnx.Rngs | int | None = None) -> ConvNeXt:
    """Instantiate a ConvNeXt from a config."""
    if rngs is None:
        rngs = 0
    if isinstance(rngs, int):
        rngs = nnx.Rngs(params=rngs)
    return ConvNeXt(cfg, rngs=rngs)
