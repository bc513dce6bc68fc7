"""DINOv2 vision transformer (official checkpoint key layout, ``block_chunks=0``).

``DinoV2(DINOV2_CONFIGS["vitl14"])`` loads ``dinov2_vitl14_pretrain.pth`` key for key (343 tensors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputShapeError
from .layers import Block


@dataclass(frozen=True)
class DinoV2Config:
    embed_dim: int = 1024  # token width
    depth: int = 24  # number of transformer blocks
    num_heads: int = 16
    patch_size: int = 14  # pixels per patch side; inputs must be multiples of it
    img_size: int = 518  # training size: the positional embedding covers (img_size / patch_size)^2 patches
    mlp_ratio: float = 4.0
    ffn: str = "mlp"  # "mlp" (S/B/L) or "swiglu" (g)
    layer_scale: float = 1.0  # LayerScale init value (present in every published DINOv2)

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


DINOV2_CONFIGS = {
    "vits14": DinoV2Config(embed_dim=384, depth=12, num_heads=6),
    "vitb14": DinoV2Config(embed_dim=768, depth=12, num_heads=12),
    "vitl14": DinoV2Config(embed_dim=1024, depth=24, num_heads=16),
    "vitg14": DinoV2Config(embed_dim=1536, depth=40, num_heads=24, ffn="swiglu"),
}


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2(nn.Module):
    """DINOv2 ViT. ``forward(x)`` with ``x`` ``(B, 3, H, W)`` (ImageNet-normalised, H and W multiples of
    the patch size) returns the normalised patch tokens as a map ``(B, embed_dim, H/14, W/14)``."""

    def __init__(self, config: DinoV2Config = DINOV2_CONFIGS["vitl14"]):
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.grid**2 + 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # unused at inference, present in checkpoints
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, qkv_bias=True, layer_scale=config.layer_scale,
                  norm_eps=1e-6, ffn=config.ffn)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def interpolate_pos_encoding(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """Positional embedding for a ``rows x cols`` patch grid.

        Reproduces DINOv2's published numerics: bicubic interpolation by *scale factor*
        ``(rows + 0.1) / 37`` (the "+0.1" trick), no antialiasing, computed in float32.
        """
        n = self.pos_embed.shape[1] - 1
        side = int(math.sqrt(n))
        if rows * cols == n and rows == cols:
            return self.pos_embed.to(dtype)
        pos = self.pos_embed.float()
        patch_pos = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(
            patch_pos, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side), mode="bicubic"
        )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat((pos[:, :1], patch_pos), dim=1).to(dtype)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens after the final LayerNorm, ``(B, 1 + H/14 * W/14, embed_dim)`` (class token first)."""
        batch, _, height, width = x.shape
        p = self.config.patch_size
        if height % p or width % p:
            raise InputShapeError(f"DINOv2 input size {height}x{width} is not a multiple of the patch size {p}")
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(batch, -1, -1).to(tokens.dtype), tokens), dim=1)
        tokens = tokens + self.interpolate_pos_encoding(height // p, width // p, tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        p = self.config.patch_size
        patches = self.forward_tokens(x)[:, 1:]
        return patches.transpose(1, 2).reshape(batch, -1, height // p, width // p)
