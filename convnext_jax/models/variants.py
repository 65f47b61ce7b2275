"""Named ConvNeXt variants (timm's names and definitions) and their configs.

Pure data and `ConvNeXtConfig`s: no modules are imported, so configs can validate model names
cheaply (`convnext_jax.models.registry` builds the models).
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any

from convnext_jax.errors import ConfigError
from convnext_jax.models.config import ConvNeXtConfig, scale_architecture

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


def variant_name(cfg: ConvNeXtConfig) -> str | None:
    """The registered name whose architecture equals `cfg`, if any."""
    for name, variant in VARIANTS.items():
        if (tuple(variant["depths"]), tuple(variant["dims"]), variant.get("use_grn", False)) == (
            cfg.depths,
            cfg.dims,
            cfg.use_grn,
        ):
            return name
    return None


def display_name(name: str, cfg: Any) -> str:
    """The name to show for a model built as `name` (may be '': the architecture of weights): the
    variant's name when `cfg` is that variant, `name (custom depths/dims)` when it was reshaped (a
    name never claims an architecture the model does not have), the matching variant's name for
    an unnamed model, else 'convnext (custom)' / 'convnextv2 (custom)'. FCMAE configs: their encoder."""
    cfg = getattr(cfg, "encoder", cfg)
    matching = variant_name(cfg)
    if name and name == matching:
        return name
    if name:
        return f"{name} (custom depths/dims)" if name in VARIANTS else name
    return matching or ("convnextv2 (custom)" if cfg.use_grn else "convnext (custom)")


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered variants matching a shell-style pattern, e.g. 'convnextv2_*'."""
    return sorted(name for name in VARIANTS if fnmatch.fnmatch(name, pattern))


def _unknown_name_error(name: str) -> ConfigError:
    close = difflib.get_close_matches(name, VARIANTS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown model {name!r}.{hint} Valid names: {', '.join(list_models())}")


def model_config(
    name: str, *, depth_multiplier: float = 1.0, width_multiplier: float = 1.0, **overrides: Any
) -> ConvNeXtConfig:
    """The config of variant `name`, scaled (see `scale_architecture`), with field overrides."""
    if name not in VARIANTS:
        raise _unknown_name_error(name)
    fields = dict(VARIANTS[name])
    fields["depths"], fields["dims"] = scale_architecture(
        overrides.pop("depths", fields["depths"]),
        overrides.pop("dims", fields["dims"]),
        depth_multiplier,
        width_multiplier,
    )
    unknown = set(overrides) - set(ConvNeXtConfig.__dataclass_fields__)
    if unknown:
        valid = ", ".join(sorted(ConvNeXtConfig.__dataclass_fields__))
        raise TypeError(f"unknown model option(s) {sorted(unknown)}; valid options: {valid}")
    fields.update(overrides)
    return ConvNeXtConfig(**fields)
