"""ConvNeXt V1 (layer scale) and V2 (GRN) as Flax NNX modules, NHWC.

Structure and parameter set follow timm's `convnext.py` one to one (stem -> 4 stages of
[downsample] + blocks -> pool -> norm -> fc), so parameter counts equal timm's and weights
map 1:1 (the names: `naming.py`). The blocks of a stage are stored stacked along a leading
depth axis and run unrolled or with `lax.scan` (see `block_stack.py`). The op implementations
(depthwise conv, LayerNorm, GELU, dense) are resolved once, when the model is built
(`convnext_jax.ops`), and handed to the modules.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from convnext_jax.models.block_stack import run_block_stack
from convnext_jax.models.config import ConvNeXtConfig
from convnext_jax.models.layers import (
    Dense,
    DepthwiseConv,
    GlobalResponseNorm,
    LayerNorm,
    constant,
    drop_path,
    trunc_normal,
)
from convnext_jax.ops import OpSet, resolve_ops

HEAD_DROPOUT_KEY = 1_000_003  # folded into the forward key for head dropout; stage i gets fold_in(key, i)


def drop_path_rates(depths: tuple[int, ...], drop_path_rate: float) -> list[np.ndarray]:
    """Linear rule 0 -> drop_path_rate over all blocks of the network, split per stage."""
    rates = np.linspace(0.0, drop_path_rate, sum(depths), dtype=np.float32)
    return np.split(rates, np.cumsum(depths)[:-1])


def model_ops(cfg: ConvNeXtConfig) -> OpSet:
    """The op implementations the config asks for ('auto' resolved for this backend)."""
    return resolve_ops(dwconv=cfg.dwconv_impl, layer_norm=cfg.norm_impl, gelu=cfg.gelu_impl, dense=cfg.dense_impl)


def _dense(
    in_features: int, out_features: int, dtype: jnp.dtype, param_dtype: jnp.dtype, ops: OpSet, rngs: nnx.Rngs
) -> Dense:
    return Dense(
        in_features,
        out_features,
        dtype=dtype,
        param_dtype=param_dtype,
        op=ops.dense,
        kernel_init=trunc_normal(),
        bias_init=constant(0.0),
        rngs=rngs,
    )


def _patch_conv(
    in_chans: int, out_chans: int, size: int, dtype: jnp.dtype, param_dtype: jnp.dtype, rngs: nnx.Rngs
) -> nnx.Conv:
    """Non-overlapping size x size conv with stride `size` (stem patchify and downsampling)."""
    return nnx.Conv(
        in_chans,
        out_chans,
        kernel_size=(size, size),
        strides=(size, size),
        padding="VALID",
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=trunc_normal(),
        bias_init=constant(0.0),
        rngs=rngs,
    )


class ConvNeXtBlock(nnx.Module):
    """dwconv 7x7 -> LayerNorm -> Linear 4C -> GELU -> [GRN] -> Linear C -> [layer scale] -> drop path + x."""

    def __init__(self, dim: int, cfg: ConvNeXtConfig, ops: OpSet, *, rngs: nnx.Rngs):
        dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        hidden = int(cfg.mlp_ratio * dim)
        self.conv_dw = DepthwiseConv(
            dim, cfg.kernel_size, op=ops.dwconv, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        self.norm = LayerNorm(dim, eps=cfg.norm_eps, param_dtype=param_dtype, op=ops.layer_norm)
        self.fc1 = _dense(dim, hidden, dtype, param_dtype, ops, rngs)
        self.grn = GlobalResponseNorm(hidden, param_dtype=param_dtype, stats=cfg.grn_stats) if cfg.use_grn else None
        self.fc2 = _dense(hidden, dim, dtype, param_dtype, ops, rngs)
        self.gamma = (
            nnx.Param(constant(cfg.ls_init_value)(None, (dim,), param_dtype)) if cfg.ls_init_value is not None else None
        )
        self.gelu = ops.gelu

    def __call__(
        self,
        x: jax.Array,
        drop_rate: jax.Array | None = None,
        key: jax.Array | None = None,
        keep: jax.Array | None = None,
    ) -> jax.Array:
        """`keep` (N, H, W, 1; 0 = removed): the dense emulation of a sparse block (FCMAE's encoder).
        Removed positions are zeroed before the depthwise conv, the only op that mixes positions,
        and left out of GRN's statistics, so nothing at a removed position reaches a kept one."""
        shortcut = x
        x = self.conv_dw(x if keep is None else x * keep)
        x = self.norm(x)
        x = self.gelu(self.fc1(x))
        if self.grn is not None:
            x = self.grn(x, keep)
        x = self.fc2(x)
        if self.gamma is not None:
            x = x * self.gamma[...].astype(x.dtype)
        if key is not None:
            x = drop_path(x, drop_rate, key)
        return shortcut + x


def _stacked_blocks(dim: int, depth: int, cfg: ConvNeXtConfig, ops: OpSet, rngs: nnx.Rngs) -> ConvNeXtBlock:
    """Create `depth` independently initialised blocks and stack their params on axis 0."""
    blocks = [ConvNeXtBlock(dim, cfg, ops, rngs=rngs) for _ in range(depth)]
    graphdef, _ = nnx.split(blocks[0])
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[nnx.state(b) for b in blocks])
    return nnx.merge(graphdef, stacked)


class ConvNeXtStage(nnx.Module):
    """[LayerNorm -> 2x2 stride-2 conv] downsample (all stages but the first), then `depth` blocks."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        rates: np.ndarray,
        cfg: ConvNeXtConfig,
        ops: OpSet,
        *,
        downsample: bool,
        rngs: nnx.Rngs,
    ):
        dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        if downsample:
            self.downsample_norm = LayerNorm(in_dim, eps=cfg.norm_eps, param_dtype=param_dtype, op=ops.layer_norm)
            self.downsample_conv = _patch_conv(in_dim, dim, 2, dtype, param_dtype, rngs)
        else:
            self.downsample_norm = self.downsample_conv = None
        self.blocks = _stacked_blocks(dim, depth, cfg, ops, rngs)
        self.depth = depth
        self.drop_rates = tuple(float(r) for r in rates)
        self.cfg = cfg

    def __call__(self, x: jax.Array, rng: jax.Array | None = None, keep: jax.Array | None = None) -> jax.Array:
        """`keep`: the stage's keep mask at its resolution (see `ConvNeXtBlock`). The downsample needs
        none: a masked patch covers whole 2x2 windows, so kept outputs only see kept inputs."""
        if self.downsample_conv is not None:
            x = self.downsample_conv(self.downsample_norm(x))
        per_block: dict[str, jax.Array] = {}
        if rng is not None and any(r > 0 for r in self.drop_rates):
            per_block = {"rate": jnp.asarray(self.drop_rates, jnp.float32), "key": jax.random.split(rng, self.depth)}

        def block_fn(block: ConvNeXtBlock, h: jax.Array, inputs: dict[str, jax.Array]) -> jax.Array:
            return block(h, inputs.get("rate"), inputs.get("key"), keep)

        if not per_block:  # scan needs at least one per-block input to know the length
            per_block = {"index": jnp.arange(self.depth)}
        graphdef, state = nnx.split(self.blocks)
        return run_block_stack(
            graphdef,
            state,
            x,
            per_block,
            block_fn,
            scan=self.cfg.scan_blocks,
            remat=self.cfg.remat,
            remat_segments=self.cfg.remat_segments,
        )


def upsample_keep(keep: jax.Array, factor: int, dtype: jnp.dtype) -> jax.Array:
    """A patch keep mask (N, h, w) at `factor` times the resolution, as (N, h*f, w*f, 1)."""
    return jnp.repeat(jnp.repeat(keep, factor, axis=1), factor, axis=2)[..., None].astype(dtype)


class ConvNeXtBackbone(nnx.Module):
    """Stem and stages, shared by the classifier (`ConvNeXt`) and the FCMAE pre-training model:
    the same parameter names at the top level, so an encoder loads into a classifier as it is."""

    def _build_backbone(self, cfg: ConvNeXtConfig, ops: OpSet, rngs: nnx.Rngs) -> None:
        dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        self.stem_conv = _patch_conv(cfg.in_chans, cfg.dims[0], cfg.patch_size, dtype, param_dtype, rngs)
        self.stem_norm = LayerNorm(cfg.dims[0], eps=cfg.norm_eps, param_dtype=param_dtype, op=ops.layer_norm)
        rates = drop_path_rates(cfg.depths, cfg.drop_path_rate)
        stages = []
        in_dim = cfg.dims[0]
        for i, (depth, dim) in enumerate(zip(cfg.depths, cfg.dims)):
            stages.append(ConvNeXtStage(in_dim, dim, depth, rates[i], cfg, ops, downsample=i > 0, rngs=rngs))
            in_dim = dim
        self.stages = nnx.List(stages)

    @property
    def total_stride(self) -> int:
        """Input pixels per position of the last stage."""
        return self.backbone_cfg.patch_size * 2 ** (len(self.backbone_cfg.depths) - 1)

    def forward_features(
        self, x: jax.Array, *, train: bool = False, rng: jax.Array | None = None, keep: jax.Array | None = None
    ) -> jax.Array:
        """Stem and stages: NHWC images -> NHWC feature map of the last stage (compute dtype).

        `keep` (N, H/stride, W/stride; 1 = kept, 0 = removed), a mask on the last stage's grid,
        runs the dense emulation of the sparse FCMAE encoder: removed positions are zeroed after
        the stem and before every depthwise conv, left out of GRN's statistics, and zero in the output.
        """
        cfg = self.backbone_cfg
        stochastic = train and cfg.drop_path_rate > 0
        if stochastic and rng is None:
            raise ValueError("drop_path_rate > 0 and train=True need an RNG key: call model(x, train=True, rng=key)")
        dtype = jnp.dtype(cfg.dtype)
        x = self.stem_norm(self.stem_conv(x.astype(dtype)))
        last = len(self.stages) - 1
        stage_keep = None if keep is None else [upsample_keep(keep, 2 ** (last - i), dtype) for i in range(last + 1)]
        if keep is not None:
            x = x * stage_keep[0]
        for i, stage in enumerate(self.stages):
            x = stage(x, jax.random.fold_in(rng, i) if stochastic else None, None if keep is None else stage_keep[i])
        return x if keep is None else x * stage_keep[-1]


class ConvNeXt(ConvNeXtBackbone):
    """ConvNeXt V1/V2 classifier. Input NHWC images, output fp32 logits (N, num_classes).

    Call with `train=True, rng=key` to enable stochastic depth and head dropout; the key is
    split per stage and per block, so every block draws an independent mask.
    """

    def __init__(self, cfg: ConvNeXtConfig, *, rngs: nnx.Rngs, ops: OpSet | None = None):
        self.cfg = self.backbone_cfg = cfg
        self.ops = ops = ops or model_ops(cfg)
        param_dtype = jnp.dtype(cfg.param_dtype)
        self._build_backbone(cfg, ops, rngs)
        self.head_norm = LayerNorm(
            cfg.dims[-1], eps=cfg.norm_eps, out_dtype=jnp.float32, param_dtype=param_dtype, op=ops.layer_norm
        )
        if cfg.num_classes > 0:
            self.head_fc = _dense(cfg.dims[-1], cfg.num_classes, jnp.float32, param_dtype, ops, rngs)
            if cfg.head_init_scale != 1.0:
                self.head_fc.kernel[...] = self.head_fc.kernel[...] * cfg.head_init_scale
                self.head_fc.bias[...] = self.head_fc.bias[...] * cfg.head_init_scale
        else:
            self.head_fc = None

    def forward_head(
        self, features: jax.Array, *, pre_logits: bool = False, train: bool = False, rng: jax.Array | None = None
    ) -> jax.Array:
        """Global average pool -> LayerNorm -> [dropout] -> fc, all in fp32."""
        x = self.head_norm(jnp.mean(features.astype(jnp.float32), axis=(1, 2)))
        if train and self.cfg.head_drop_rate > 0:
            if rng is None:
                raise ValueError(
                    "head_drop_rate > 0 and train=True need an RNG key: call model(x, train=True, rng=key)"
                )
            keep = jax.random.bernoulli(
                jax.random.fold_in(rng, HEAD_DROPOUT_KEY), 1.0 - self.cfg.head_drop_rate, x.shape
            )
            x = jnp.where(keep, x / (1.0 - self.cfg.head_drop_rate), 0.0)
        if pre_logits or self.head_fc is None:
            return x
        return self.head_fc(x)

    def __call__(self, x: jax.Array, *, train: bool = False, rng: jax.Array | None = None) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != self.cfg.in_chans:
            raise ValueError(
                f"expected NHWC images with {self.cfg.in_chans} channels, got shape {x.shape}"
                " (PyTorch NCHW tensors need x.transpose(0, 2, 3, 1))"
            )
        min_size = self.cfg.patch_size * 2 ** (len(self.cfg.depths) - 1)
        if x.shape[1] < min_size or x.shape[2] < min_size:
            raise ValueError(f"input {x.shape[1]}x{x.shape[2]} is smaller than the model's total stride {min_size}")
        return self.forward_head(self.forward_features(x, train=train, rng=rng), train=train, rng=rng)
