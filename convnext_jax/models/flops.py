"""Analytic forward cost of a ConvNeXt: multiply-accumulates of its convolutions and linear
layers (the figure timm's model cards report as GMACs; norms/activations are not counted)."""

from __future__ import annotations

from convnext_jax.models.config import ConvNeXtConfig


def forward_macs(cfg: ConvNeXtConfig, image_size: int | tuple[int, int]) -> int:
    """MACs of one forward pass on one `image_size` image (square int or (height, width))."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    height, width = height // cfg.patch_size, width // cfg.patch_size
    macs = height * width * cfg.dims[0] * cfg.in_chans * cfg.patch_size**2  # stem
    k2 = cfg.kernel_size**2
    for i, (depth, dim) in enumerate(zip(cfg.depths, cfg.dims)):
        if i > 0:
            height, width = height // 2, width // 2
            macs += height * width * dim * cfg.dims[i - 1] * 4  # 2x2 stride-2 downsample conv
        hidden = int(cfg.mlp_ratio * dim)
        macs += depth * height * width * (dim * k2 + 2 * dim * hidden)  # depthwise conv + MLP
    return macs + cfg.dims[-1] * cfg.num_classes
