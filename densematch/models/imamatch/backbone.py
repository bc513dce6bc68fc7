"""MBFormer: IMAMatch's grey-image backbone (upstream ``MBFormer_248_standardPE``).

Conv stem to 1/2, MB stages at 1/2, 1/4, 1/8, multi-scale attention blocks on the 1/8 map of both
images, then an FPN back to 1/4 and 1/2 (bilinear, align_corners=True). No positional encoding (it is
commented out upstream). Input sides must be multiples of 32 (the 1/8 map is pooled 4x in attention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputShapeError
from .attention import MultiScaleAttentionBlock, check_scannet_bug_size
from .blocks import ConvBlock, ConvBNGelu, ResidualMB
from .config import IMAMatchArchitecture


def _stage(dim_in: int, dim_out: int, stride: int, ratio: float, depth: int) -> nn.Sequential:
    """A strided ResidualMB (expansion 1) then ``depth`` ConvBlocks."""
    return nn.Sequential(ResidualMB(dim_in, dim_out, stride), *[ConvBlock(dim_out, ratio) for _ in range(depth)])


class MBFormer(nn.Module):
    """``forward(x (2B, 1, H, W))`` -> ``(f2 (2B, dims[0], H/2, W/2), f4 (2B, dims[1], H/4, W/4),
    f8 (2B, dims[2], H/8, W/8))``; the batch holds all images 0, then all images 1."""

    def __init__(self, arch: IMAMatchArchitecture):
        super().__init__()
        self.fix_bug_for_scannet = arch.fix_bug_for_scannet
        stem, dims, depths, ratio = arch.dim_conv_stem, arch.dims, arch.depths, arch.expansion
        self.conv_stem = nn.Sequential(ConvBNGelu(1, stem, 3, 2), ConvBNGelu(stem, stem, 3, 1))
        if depths[0] == 0:
            self.d0 = nn.Sequential(ConvBNGelu(stem, dims[0], 3, 1), ConvBNGelu(dims[0], dims[0], 3, 1))
        else:
            self.d0 = _stage(stem, dims[0], 1, ratio[0], depths[0])
        self.d1 = _stage(dims[0], dims[1], 2, ratio[1], depths[1])
        self.d2 = _stage(dims[1], dims[2], 2, ratio[2], depths[2])
        self.u0 = nn.ModuleList([
            nn.Conv2d(dims[0], dims[1], 1, bias=False),
            nn.Sequential(ConvBNGelu(dims[1], dims[1], 3, 1), nn.Conv2d(dims[1], dims[0], 3, 1, 1, bias=False)),
        ])
        self.u1 = nn.ModuleList([
            nn.Conv2d(dims[1], dims[2], 1, bias=False),
            nn.Sequential(ConvBNGelu(dims[2], dims[2], 3, 1), nn.Conv2d(dims[2], dims[1], 3, 1, 1, bias=False)),
        ])
        self.attn = nn.Sequential(*[
            MultiScaleAttentionBlock(dims[2], arch.head_dim, arch.dropout, ratio[3], arch.focusing_factor,
                                     arch.fix_bug_for_scannet)
            for _ in range(arch.attn_depth)
        ])

    def check_input_size(self, height: int, width: int) -> None:
        """Raise :class:`InputShapeError` for an input this backbone cannot take: sides multiples of 32 (the
        1/8 map is pooled 4x in attention); with ``fix_bug_for_scannet``, every scale's cells a multiple of 60."""
        if height % 32 or width % 32:
            raise InputShapeError(f"IMAMatch needs image sides that are multiples of 32, got {height}x{width}")
        if self.fix_bug_for_scannet:
            check_scannet_bug_size(height, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[0] % 2:
            raise InputShapeError(f"MBFormer expects (2B, 1, H, W) grey images, got {tuple(x.shape)}")
        self.check_input_size(*x.shape[-2:])
        x0 = self.d0(self.conv_stem(x))
        x1 = self.d1(x0)
        x2 = self.attn(self.d2(x1))
        x1 = self.u1[1](self.u1[0](x1) + F.interpolate(x2, scale_factor=2.0, mode="bilinear", align_corners=True))
        x0 = self.u0[1](self.u0[0](x0) + F.interpolate(x1, scale_factor=2.0, mode="bilinear", align_corners=True))
        return x0, x1, x2
