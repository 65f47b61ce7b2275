"""A dense PyTorch emulation of the official FCMAE (facebookresearch/ConvNeXt-V2 `models/fcmae.py`,
`models/convnextv2_sparse.py`, `models/utils.py`), used by the tests as the reference.

Its parameters have the official names and shapes, so its `state_dict()` is laid out like the
official FCMAE checkpoints (sparse encoder: `kernel` (k*k, in, out) convolutions, `.ln` /
`.linear` wrappers, (1, C) biases and GRN parameters). The sparse encoder (MinkowskiEngine, not
installable here) is computed densely with the same semantics:
  * `to_sparse` keeps the positions that the mask keeps (removed ones are zeroed after the stem);
  * a sparse depthwise conv outputs at kept positions the sum over its *kept* neighbours: the
    dense conv of the input with removed positions zeroed;
  * MinkowskiLayerNorm / Linear / GELU act per position;
  * MinkowskiGRN's norm runs over all kept points of the batch (`grn_stats="batch"`), or per image
    (`"sample"`, the paper's version);
  * the 2x2 stride-2 sparse conv sees only kept inputs at kept outputs (a masked patch covers whole
    windows); `dense()` fills removed positions with zeros.
Sparse kernels are turned into dense weights with the official fine-tuning remap
(`main_finetune.py: remap_checkpoint_keys`).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.reference.official_convnext import GRN, LayerNorm


def dense_from_sparse_conv(kernel: torch.Tensor) -> torch.Tensor:
    """(k*k, in, out) -> (out, in, k, k): permute(2, 1, 0), reshape, swap the last two axes."""
    kv, cin, cout = kernel.shape
    k = int(round(kv**0.5))
    return kernel.permute(2, 1, 0).reshape(cout, cin, k, k).transpose(-1, -2)


def dense_from_sparse_dwconv(kernel: torch.Tensor) -> torch.Tensor:
    """(k*k, C) -> (C, 1, k, k): permute(1, 0), reshape, swap the last two axes."""
    kv, c = kernel.shape
    k = int(round(kv**0.5))
    return kernel.permute(1, 0).reshape(c, 1, k, k).transpose(-1, -2)


class MinkowskiLayerNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.ln = nn.LayerNorm(dim, eps=eps)

    def forward(self, x):  # channels last
        return self.ln(x)


class MinkowskiLinear(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.linear = nn.Linear(cin, cout)

    def forward(self, x):
        return self.linear(x)


class SparseConv(nn.Module):
    """MinkowskiConvolution, kernel_size=2, stride=2 (the downsampling)."""

    def __init__(self, cin, cout, k=2):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(k * k, cin, cout) * 0.02)
        self.bias = nn.Parameter(torch.zeros(1, cout))

    def forward(self, x):  # NCHW
        return F.conv2d(x, dense_from_sparse_conv(self.kernel), self.bias.reshape(-1), stride=2)


class SparseDwConv(nn.Module):
    """MinkowskiDepthwiseConvolution, kernel_size=7: outputs only from kept neighbours."""

    def __init__(self, dim, k=7):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(k * k, dim) * 0.02)
        self.bias = nn.Parameter(torch.zeros(1, dim))

    def forward(self, x, keep):  # NCHW, keep (N, 1, H, W)
        weight = dense_from_sparse_dwconv(self.kernel)
        return F.conv2d(x * keep, weight, self.bias.reshape(-1), padding=weight.shape[-1] // 2, groups=x.shape[1])


class MinkowskiGRN(nn.Module):
    def __init__(self, dim, stats):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, dim))
        self.beta = nn.Parameter(torch.zeros(1, dim))
        self.stats = stats

    def forward(self, x, keep):  # NHWC, keep (N, H, W, 1)
        dims = (0, 1, 2) if self.stats == "batch" else (1, 2)
        gx = torch.sqrt(((x * keep) ** 2).sum(dim=dims, keepdim=True))
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class SparseBlock(nn.Module):
    def __init__(self, dim, stats):
        super().__init__()
        self.dwconv = SparseDwConv(dim)
        self.norm = MinkowskiLayerNorm(dim, 1e-6)
        self.pwconv1 = MinkowskiLinear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = MinkowskiLinear(4 * dim, dim)
        self.grn = MinkowskiGRN(4 * dim, stats)

    def forward(self, x, keep):  # NCHW, keep (N, 1, H, W)
        shortcut = x
        x = self.dwconv(x, keep).permute(0, 2, 3, 1)
        x = self.act(self.pwconv1(self.norm(x)))
        x = self.pwconv2(self.grn(x, keep.permute(0, 2, 3, 1)))
        return shortcut + x.permute(0, 3, 1, 2)


class Downsample(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.add_module("0", MinkowskiLayerNorm(cin, 1e-6))
        self.add_module("1", SparseConv(cin, cout))

    def forward(self, x):
        x = getattr(self, "0")(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return getattr(self, "1")(x)


class SparseConvNeXtV2(nn.Module):
    def __init__(self, in_chans, depths, dims, stats):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4),
                    LayerNorm(dims[0], eps=1e-6, data_format="channels_first"),
                )
            ]
        )
        for i in range(len(dims) - 1):
            self.downsample_layers.append(Downsample(dims[i], dims[i + 1]))
        self.stages = nn.ModuleList(
            nn.ModuleList(SparseBlock(dims[i], stats) for _ in range(depths[i])) for i in range(len(dims))
        )

    def forward(self, x, mask):  # mask (N, L): 1 = removed
        stages = len(self.stages)
        h = x.shape[2] // (4 * 2 ** (stages - 1))
        keep = 1.0 - mask.reshape(-1, 1, h, x.shape[3] // (4 * 2 ** (stages - 1)))
        x = self.downsample_layers[0](x)
        for i in range(stages):
            stage_keep = keep.repeat_interleave(2 ** (stages - 1 - i), 2).repeat_interleave(2 ** (stages - 1 - i), 3)
            x = x * stage_keep if i == 0 else self.downsample_layers[i](x)
            for block in self.stages[i]:
                x = block(x, stage_keep)
        return x * keep  # dense(): zeros at removed positions


class Block(nn.Module):
    """The official dense ConvNeXt-V2 block (`models/convnextv2.py`), as the decoder uses it."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        shortcut = x
        x = self.dwconv(x).permute(0, 2, 3, 1)
        x = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(x)))))
        return shortcut + x.permute(0, 3, 1, 2)


class FCMAE(nn.Module):
    def __init__(
        self,
        in_chans=3,
        depths=(3, 3, 9, 3),
        dims=(96, 192, 384, 768),
        decoder_depth=1,
        decoder_embed_dim=512,
        patch_size=32,
        mask_ratio=0.6,
        norm_pix_loss=False,
        grn_stats="batch",
    ):
        super().__init__()
        self.patch_size, self.mask_ratio, self.norm_pix_loss = patch_size, mask_ratio, norm_pix_loss
        self.encoder = SparseConvNeXtV2(in_chans, depths, dims, grn_stats)
        self.proj = nn.Conv2d(dims[-1], decoder_embed_dim, kernel_size=1)
        self.mask_token = nn.Parameter(torch.zeros(1, decoder_embed_dim, 1, 1))
        self.decoder = nn.Sequential(*[Block(decoder_embed_dim) for _ in range(decoder_depth)])
        self.pred = nn.Conv2d(decoder_embed_dim, patch_size**2 * in_chans, kernel_size=1)

    def patchify(self, imgs):
        p = self.patch_size
        n, c, height, width = imgs.shape
        x = imgs.reshape(n, c, height // p, p, width // p, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(n, (height // p) * (width // p), p * p * c)

    def forward_decoder(self, x, mask):
        x = self.proj(x)
        n, c, h, w = x.shape
        mask = mask.reshape(-1, h, w).unsqueeze(1).type_as(x)
        x = x * (1.0 - mask) + self.mask_token.repeat(n, 1, h, w) * mask
        return self.pred(self.decoder(x))

    def forward_loss(self, imgs, pred, mask):
        n, c, _, _ = pred.shape
        pred = torch.einsum("ncl->nlc", pred.reshape(n, c, -1))
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum(), pred

    def forward(self, imgs, mask):
        x = self.encoder(imgs, mask)
        loss, pred = self.forward_loss(imgs, self.forward_decoder(x, mask), mask)
        return loss, pred, mask
