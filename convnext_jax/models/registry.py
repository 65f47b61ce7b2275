"""`create_model` and `build_model`: ConvNeXt modules from a variant name or a config."""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from convnext_jax.models.config import ConvNeXtConfig
from convnext_jax.models.convnext import ConvNeXt
from convnext_jax.models.fcmae import FCMAE, FCMAEConfig, is_fcmae_config
from convnext_jax.models.variants import VARIANTS, list_models, model_config

__all__ = [
    "VARIANTS",
    "build_any",
    "build_fcmae",
    "build_model",
    "create_fcmae",
    "create_model",
    "list_models",
    "model_config",
]


def create_model(
    name: str,
    *,
    num_classes: int = 1000,
    drop_path_rate: float = 0.0,
    dtype: Any = "float32",
    rngs: nnx.Rngs | int | None = None,
    depth_multiplier: float = 1.0,
    width_multiplier: float = 1.0,
    **overrides: Any,
) -> ConvNeXt:
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
    cfg = model_config(
        name,
        depth_multiplier=depth_multiplier,
        width_multiplier=width_multiplier,
        num_classes=num_classes,
        drop_path_rate=drop_path_rate,
        dtype=jax.numpy.dtype(dtype).name,
        **overrides,
    )
    return build_model(cfg, rngs)


def build_model(cfg: ConvNeXtConfig, rngs: nnx.Rngs | int | None = None) -> ConvNeXt:
    """Instantiate a ConvNeXt from a config."""
    if rngs is None:
        rngs = 0
    if isinstance(rngs, int):
        rngs = nnx.Rngs(params=rngs)
    return ConvNeXt(cfg, rngs=rngs)


def create_fcmae(
    name: str,
    *,
    mask_ratio: float = 0.6,
    patch_size: int = 32,
    decoder_dim: int = 512,
    decoder_depth: int = 1,
    norm_pix_loss: bool = False,
    grn_stats: str = "sample",
    drop_path_rate: float = 0.0,
    dtype: Any = "float32",
    init: str = "official",
    rngs: nnx.Rngs | int | None = None,
    depth_multiplier: float = 1.0,
    width_multiplier: float = 1.0,
    **overrides: Any,
) -> FCMAE:
    """Build the FCMAE pre-training model of a named variant (ConvNeXt-V2 for the official models).

    Args:
      name: one of `list_models()`; its depths and widths (scaled as in `create_model`) are the encoder's.
      mask_ratio: fraction of the patches removed per image.
      patch_size: the masked patch in pixels; must equal the encoder's total stride (32).
      decoder_dim, decoder_depth: the decoder's width and number of ConvNeXt-V2 blocks.
      norm_pix_loss: predict per-patch normalised pixels.
      grn_stats: the encoder's GRN statistics, 'sample' (per image, the paper) or 'batch' (the
        official sparse code's MinkowskiGRN, over every kept position of the batch).
      init: 'official' (the official code's initialisation) or 'convnext' (the classifier's).
      **overrides: other encoder `ConvNeXtConfig` fields (depths, dims, remat, scan_blocks, ...).
    """
    encoder = model_config(
        name,
        depth_multiplier=depth_multiplier,
        width_multiplier=width_multiplier,
        num_classes=0,
        drop_path_rate=drop_path_rate,
        dtype=jax.numpy.dtype(dtype).name,
        grn_stats=grn_stats,
        **overrides,
    )
    cfg = FCMAEConfig(
        encoder=encoder,
        mask_ratio=mask_ratio,
        patch_size=patch_size,
        decoder_dim=decoder_dim,
        decoder_depth=decoder_depth,
        norm_pix_loss=norm_pix_loss,
        init=init,
    )
    return build_fcmae(cfg, rngs)


def build_fcmae(cfg: FCMAEConfig, rngs: nnx.Rngs | int | None = None) -> FCMAE:
    """Instantiate an FCMAE from its config."""
    if rngs is None:
        rngs = 0
    if isinstance(rngs, int):
        rngs = nnx.Rngs(params=rngs)
    return FCMAE(cfg, rngs=rngs)


def build_any(cfg: Any, rngs: nnx.Rngs | int | None = None) -> Any:
    """A classifier from a ConvNeXtConfig, an FCMAE from an FCMAEConfig."""
    return build_fcmae(cfg, rngs) if is_fcmae_config(cfg) else build_model(cfg, rngs)
