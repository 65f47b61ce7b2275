"""FCMAE: ConvNeXt V2's fully convolutional masked autoencoder (pre-training), dense in JAX.

The official code (facebookresearch/ConvNeXt-V2 `models/fcmae.py`) runs the encoder on sparse
tensors (MinkowskiEngine). Here the same function is computed densely (`ConvNeXtBackbone` with a
keep mask): removed positions are zeroed after the stem and before every depthwise conv, left out
of GRN's statistics (per image, or over the batch as the official MinkowskiGRN), and zero in the
encoder's output; since a masked patch equals the encoder's total stride, every downsampling
window is wholly kept or wholly removed. The decoder is dense: 1x1 projection, a learned mask
token at removed positions, ConvNeXt-V2 blocks, a 1x1 prediction of each patch's pixels. The
loss is the mean squared error over the removed patches (optionally of per-patch normalised
pixels, with torch's unbiased variance).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from convnext_jax.errors import ConfigError
from convnext_jax.models.config import ConvNeXtConfig
from convnext_jax.models.convnext import ConvNeXtBackbone, ConvNeXtStage, _dense, model_ops
from convnext_jax.models.fcmae_init import official_init
from convnext_jax.ops import OpSet

INITS = ("official", "convnext")


@dataclasses.dataclass(frozen=True)
class FCMAEConfig:
    """An FCMAE model: its encoder (a ConvNeXt config; the classifier head is not used) and the
    masking, decoder and loss settings of the official `FCMAE` class.

    init: 'official' reproduces the official model's initialisation (its `_init_weights`, applied
    over the whole model, draws the stem, depthwise, linear, projection and prediction weights
    from a truncated normal with std 1 and leaves the decoder's Linear layers at PyTorch's
    default); 'convnext' initialises like the classifier (std 0.02 everywhere).
    """

    encoder: ConvNeXtConfig
    mask_ratio: float = 0.6
    patch_size: int = 32
    decoder_dim: int = 512
    decoder_depth: int = 1
    norm_pix_loss: bool = False
    init: str = "official"

    def __post_init__(self) -> None:
        stride = self.encoder.patch_size * 2 ** (len(self.encoder.depths) - 1)
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.patch_size != stride:
            raise ConfigError(
                f"patch_size must equal the encoder's total stride ({stride} px), got {self.patch_size}: "
                "one masked patch is one position of the encoder's last stage"
            )
        if self.decoder_dim < 1 or self.decoder_depth < 0:
            raise ConfigError(
                f"decoder_dim must be >= 1 and decoder_depth >= 0, got {self.decoder_dim}, {self.decoder_depth}"
            )
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {INITS}, got {self.init!r}")

    @property
    def decoder(self) -> ConvNeXtConfig:
        """The decoder blocks' config: dense ConvNeXt-V2 blocks (GRN per image, no layer scale, no
        drop path) at decoder_dim, with the encoder's execution options."""
        return dataclasses.replace(
            self.encoder,
            depths=(max(self.decoder_depth, 1),),
            dims=(self.decoder_dim,),
            use_grn=True,
            ls_init_value=None,
            grn_stats="sample",
            drop_path_rate=0.0,
            num_classes=0,
        )

    def replace(self, **changes: Any) -> FCMAEConfig:
        return dataclasses.replace(self, **changes)


def image_size_problem(height: int, width: int, patch_size: int) -> str | None:
    """Why FCMAE cannot mask images of this size (None when it can): the config's check and the
    model's, one rule."""
    if height and not height % patch_size and not width % patch_size:
        return None
    return (
        f"FCMAE masks whole patches of {patch_size} px, so the image size must be a multiple of it; got "
        f"{height}x{width} (e.g. data.image_size={max(patch_size, height // patch_size * patch_size)})"
    )


def is_fcmae_config(cfg: Any) -> bool:
    """An FCMAE config (encoder + pixel decoder), as opposed to a classifier's ConvNeXtConfig."""
    return isinstance(cfg, FCMAEConfig)


def random_mask(key: jax.Array, batch: int, num_patches: int, mask_ratio: float) -> jax.Array:
    """The official masking: per image, Gaussian noise over the patches, the int(L * (1 - ratio))
    lowest kept. (N, L) float32, 1 = removed."""
    keep = int(num_patches * (1 - mask_ratio))
    noise = jax.random.normal(key, (batch, num_patches))
    ranks = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)
    return (ranks >= keep).astype(jnp.float32)


def patchify(images: jax.Array, patch: int) -> jax.Array:
    """(N, H, W, C) -> (N, L, patch * patch * C), patches in row-major order, pixels as (p, q, c)."""
    n, h, w, c = images.shape
    x = images.reshape(n, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: jax.Array, patch: int, height: int, width: int) -> jax.Array:
    """The inverse of `patchify`: (N, L, patch * patch * C) -> (N, H, W, C)."""
    n, _, d = patches.shape
    c = d // (patch * patch)
    x = patches.reshape(n, height // patch, width // patch, patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, height, width, c)


def patch_targets(images: jax.Array, patch: int, norm_pix: bool) -> jax.Array:
    """The pixels each patch's prediction is compared with (per-patch normalised with `norm_pix`:
    mean and torch's unbiased variance over the patch's values)."""
    target = patchify(images.astype(jnp.float32), patch)
    if norm_pix:
        mean = jnp.mean(target, axis=-1, keepdims=True)
        var = jnp.var(target, axis=-1, keepdims=True, ddof=1)
        target = (target - mean) / jnp.sqrt(var + 1e-6)
    return target


class FCMAE(ConvNeXtBackbone):
    """Masked-autoencoder pre-training model. `model(images, mask=None, rng=None, train=False)` ->
    (loss, pred, mask): loss a float32 scalar, pred (N, L, patch² x C) float32 in the official
    patch order, mask (N, L) float32 with 1 = removed (drawn from `rng` when not given)."""

    def __init__(self, cfg: FCMAEConfig, *, rngs: nnx.Rngs, ops: OpSet | None = None):
        self.cfg = cfg
        self.backbone_cfg = cfg.encoder
        self.ops = ops = ops or model_ops(cfg.encoder)
        enc, dec = cfg.encoder, cfg.decoder
        dtype, param_dtype = jnp.dtype(enc.dtype), jnp.dtype(enc.param_dtype)
        self._build_backbone(enc, ops, rngs)
        self.proj = _dense(enc.dims[-1], cfg.decoder_dim, dtype, param_dtype, ops, rngs)
        self.mask_token = nnx.Param(
            jnp.asarray(
                np.random.default_rng(np.asarray(jax.random.key_data(rngs.params())).ravel().tolist()).standard_normal(
                    cfg.decoder_dim
                )
                * 0.02,
                param_dtype,
            )
        )
        self.decoder = (
            ConvNeXtStage(
                cfg.decoder_dim,
                cfg.decoder_dim,
                cfg.decoder_depth,
                np.zeros(cfg.decoder_depth, np.float32),
                dec,
                ops,
                downsample=False,
                rngs=rngs,
            )
            if cfg.decoder_depth
            else None
        )
        self.pred = _dense(cfg.decoder_dim, cfg.patch_size**2 * enc.in_chans, dtype, param_dtype, ops, rngs)
        if cfg.init == "official":
            official_init(self, rngs.params())

    def num_patches(self, height: int, width: int) -> int:
        return (height // self.cfg.patch_size) * (width // self.cfg.patch_size)

    def check_input(self, images: jax.Array) -> None:
        p, c = self.cfg.patch_size, self.cfg.encoder.in_chans
        if images.ndim != 4 or images.shape[-1] != c:
            raise ValueError(f"expected NHWC images with {c} channels, got shape {images.shape}")
        problem = image_size_problem(images.shape[1], images.shape[2], p)
        if problem:
            raise ConfigError(problem)

    def decode(self, features: jax.Array, mask: jax.Array) -> jax.Array:
        """Encoder features (N, h, w, C) and the mask (N, L) -> predictions (N, L, patch² x C) float32."""
        n, h, w, _ = features.shape
        removed = mask.reshape(n, h, w, 1).astype(features.dtype)
        x = self.proj(features)
        x = x * (1.0 - removed) + self.mask_token[...].astype(x.dtype) * removed
        if self.decoder is not None:
            x = self.decoder(x)
        return self.pred(x).astype(jnp.float32).reshape(n, h * w, -1)

    def patch_errors(self, images: jax.Array, pred: jax.Array) -> jax.Array:
        """Mean squared error of every patch's prediction (N, L)."""
        target = patch_targets(images, self.cfg.patch_size, self.cfg.norm_pix_loss)
        return jnp.mean(jnp.square(pred - target), axis=-1)

    def loss(self, images: jax.Array, pred: jax.Array, mask: jax.Array) -> jax.Array:
        """Mean squared error over the pixels of the removed patches."""
        return jnp.sum(self.patch_errors(images, pred) * mask) / jnp.sum(mask)

    def __call__(
        self, images: jax.Array, *, mask: jax.Array | None = None, rng: jax.Array | None = None, train: bool = False
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        self.check_input(images)
        n, height, width, _ = images.shape
        num_patches = self.num_patches(height, width)
        if mask is None:
            if rng is None:
                raise ValueError("FCMAE draws its mask from an RNG key: call model(images, rng=key) or pass mask=")
            mask = random_mask(jax.random.fold_in(rng, 0), n, num_patches, self.cfg.mask_ratio)
        mask = jnp.asarray(mask, jnp.float32)
        if mask.shape != (n, num_patches):
            raise ValueError(f"mask must have shape {(n, num_patches)} (images, patches), got {mask.shape}")
        keep = (1.0 - mask).reshape(n, height // self.cfg.patch_size, width // self.cfg.patch_size)
        features = self.forward_features(
            images, train=train, rng=None if rng is None else jax.random.fold_in(rng, 1), keep=keep
        )
        pred = self.decode(features, mask)
        return self.loss(images, pred, mask), pred, mask
