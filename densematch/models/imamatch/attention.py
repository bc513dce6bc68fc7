"""IMAMatch's attention: focused linear attention, the multi-scale image layer (backbone) and the
token layer of the fine windows.

Shapes: image maps ``(N, C, H, W)``; attention inputs ``(N, L, heads, d)``. Parameter names follow
upstream (``models/matcher/attention.py`` and ``attention_model.py``) so that its checkpoints load.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputShapeError
from ..semidense.linear_attention import linear_attention
from .blocks import MB, DropPath

SCANNET_BUG_HEIGHT = 60  # upstream FIX_BUG_FOR_SCANNET: the depthwise conv always reshapes with this height


def check_scannet_bug_size(height: int, width: int) -> None:
    """With ``fix_bug_for_scannet`` every scale's depthwise conv reshapes its ``(H/8s) (W/8s)`` cells
    (s = 1, 2, 4) with height 60; raise :class:`InputShapeError` up front when that cannot work for a
    ``height x width`` network input."""
    for stride in (8, 16, 32):
        cells = (height // stride) * (width // stride)
        if cells % SCANNET_BUG_HEIGHT:
            raise InputShapeError(
                f"fix_bug_for_scannet (the ScanNet model) reshapes every attention scale with height "
                f"{SCANNET_BUG_HEIGHT}: a {width}x{height} input has {cells} cells at 1/{stride}, not a multiple of "
                f"{SCANNET_BUG_HEIGHT}; use 640x480 (the ScanNet size: --resolution 480 640 to train, resize=640 "
                "for 4:3 images)"
            )


class FocusedLinearAttention(nn.Module):
    """FLatten-style focused linear attention with a depthwise-conv value term (one per scale).

    ``phi(x) = (relu(x) + 1e-6) / softplus(scale)``, focused as ``phi^p / |phi^p| * |phi|`` (p = 3);
    ``o = q (k^T v) / (q . sum k + 1e-6) + DWConv5x5(v as an image)``, the conv shared by the heads.
    """

    def __init__(self, head_dim: int, focusing_factor: int = 3, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.focusing_factor = focusing_factor
        self.scale = nn.Parameter(torch.zeros(1, 1, 1, head_dim))
        self.dwc = nn.Conv2d(head_dim, head_dim, kernel_size=5, groups=head_dim, padding=2)

    def _focus(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        x = (F.relu(x) + 1e-6) / scale
        norm = x.norm(dim=-1, keepdim=True)
        x = x**self.focusing_factor
        return x / x.norm(dim=-1, keepdim=True) * norm

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, height: int) -> torch.Tensor:
        """``q (N, L, h, d)``, ``k, v (N, S, h, d)`` with ``S = height * width`` -> ``(N, L, h, d)``."""
        scale = F.softplus(self.scale)
        q, k = self._focus(q, scale), self._focus(k, scale)
        kv = torch.einsum("nshd,nshv->nhdv", k, v)
        z = 1 / (torch.einsum("nlhd,nhd->nlh", q, k.sum(dim=1)) + self.eps)
        out = torch.einsum("nlhd,nhdv,nlh->nlhv", q, kv, z)
        n, s, heads, d = v.shape
        image = v.permute(0, 2, 3, 1).reshape(n * heads, d, height, s // height)
        # contiguous as upstream: a permuted view here would carry a channels-last layout into every later
        # conv and norm (measured: the 1/8 stage ~1.5x slower on CPU)
        image = self.dwc(image).reshape(n, heads, d, s).permute(0, 3, 1, 2).contiguous()
        return (out + image).contiguous()


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(N, heads * d, H, W)`` -> ``(N, H * W, heads, d)``."""
    n, c, h, w = x.shape
    return x.reshape(n, heads, c // heads, h * w).permute(0, 3, 1, 2)


def _unheads(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``(N, H * W, heads, d)`` -> ``(N, heads * d, H, W)``."""
    n, _, heads, d = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, heads * d, h, w)


class MultiScaleAttentionLayer(nn.Module):
    """Pre-norm (BN + GELU) attention with q/k/v at 1/8, 1/16 and 1/32 of the image (1x1, 2x2/2, 4x4/4
    convs), each scale attended separately, upsampled (bilinear, align_corners=True) and mixed by
    ``softmax(scale_weight)``; then a 1x1 merge, residual, and an MB feed-forward with residual."""

    def __init__(self, dim: int, head_dim: int, dropout: float, mlp_ratio: int, focusing_factor: int,
                 fix_bug_for_scannet: bool):
        super().__init__()
        self.heads = dim // head_dim
        self.fix_bug_for_scannet = fix_bug_for_scannet
        self.scale_weight = nn.Parameter(torch.ones(3))
        self.pre_normact = nn.Sequential(nn.BatchNorm2d(dim), nn.GELU())
        for i, stride in enumerate((1, 2, 4), start=1):
            for role in "qkv":
                setattr(self, f"{role}{i}_proj", nn.Conv2d(dim, dim, stride, stride, bias=False))
        for i in (1, 2, 3):  # registered after all projections: upstream's state-dict order
            setattr(self, f"attention{i}", FocusedLinearAttention(head_dim, focusing_factor))
        self.merge = nn.Sequential(nn.Conv2d(dim, dim, 1))
        self.mlp = MB(dim, dim, mlp_ratio)
        self.dropout = DropPath(dropout)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor | None = None) -> torch.Tensor:
        """``x0`` (queries) and ``x1`` (keys/values; ``x0`` when None): ``(N, C, H, W)``, H and W divisible
        by 4 -> updated ``x0``."""
        _, _, h, w = x0.shape
        y0 = self.pre_normact(x0)
        y1 = y0 if x1 is None else self.pre_normact(x1)
        messages = []
        for i, stride in enumerate((1, 2, 4), start=1):
            q = _heads(getattr(self, f"q{i}_proj")(y0), self.heads)
            k = _heads(getattr(self, f"k{i}_proj")(y1), self.heads)
            v = _heads(getattr(self, f"v{i}_proj")(y1), self.heads)
            height = SCANNET_BUG_HEIGHT if self.fix_bug_for_scannet else h // stride  # size: MBFormer checks
            out = _unheads(getattr(self, f"attention{i}")(q, k, v, height), h // stride, w // stride)
            if stride > 1:
                out = F.interpolate(out, scale_factor=stride, mode="bilinear", align_corners=True)
            messages.append(out)
        weights = torch.softmax(self.scale_weight, dim=0)
        message = weights[0] * messages[0] + weights[1] * messages[1] + weights[2] * messages[2]
        x = x0 + self.dropout(self.merge(message.contiguous()))  # NCHW-contiguous, as upstream
        return x + self.dropout(self.mlp(x))


class MultiScaleAttentionBlock(nn.Module):
    """Self attention on both images (one batch), then cross attention updating both at once."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.self_attn = MultiScaleAttentionLayer(*args, **kwargs)
        self.cross_attn = MultiScaleAttentionLayer(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (2N, C, H, W)``: images 0 then images 1 -> same shape."""
        x = self.self_attn(x)
        x0, x1 = x.chunk(2, dim=0)
        # two calls, as upstream: in training each call's BatchNorm sees one image side only
        return torch.cat([self.cross_attn(x0, x1), self.cross_attn(x1, x0)], dim=0)


class TokenAttentionLayer(nn.Module):
    """Pre-norm (LayerNorm + GELU) elu+1 linear attention on window tokens, merge, residual, MLP."""

    def __init__(self, dim: int, head_dim: int, dropout: float, mlp_ratio: int):
        super().__init__()
        self.heads = dim // head_dim
        self.pre_norm = nn.Sequential(nn.LayerNorm(dim), nn.GELU())
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.merge = nn.Sequential(nn.Linear(dim, dim))
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(dim * mlp_ratio, dim), nn.Dropout(dropout),
        )
        self.dropout = DropPath(dropout)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """``x0 (N, L, C)`` attends to ``x1 (N, S, C)`` -> ``(N, L, C)``."""
        n, length, c = x0.shape
        y0, y1 = self.pre_norm(x0), self.pre_norm(x1)
        q = self.q_proj(y0).reshape(n, length, self.heads, -1)
        k = self.k_proj(y1).reshape(n, x1.shape[1], self.heads, -1)
        v = self.v_proj(y1).reshape(n, x1.shape[1], self.heads, -1)
        message = linear_attention(q, k, v).reshape(n, length, c)  # elu+1, as LoFTR
        x = x0 + self.dropout(self.merge(message))
        return x + self.dropout(self.mlp(x))


class TokenAttentionBlock(nn.Module):
    """Self then cross attention between the two windows' tokens (upstream ``AttentionBlock``)."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.self_attn = TokenAttentionLayer(*args, **kwargs)
        self.cross_attn = TokenAttentionLayer(*args, **kwargs)

    def forward(self, t0: torch.Tensor, t1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``t0, t1 (N, L, C)`` -> updated ``(t0, t1)``."""
        t0, t1 = self.self_attn(t0, t0), self.self_attn(t1, t1)
        return self.cross_attn(t0, t1), self.cross_attn(t1, t0)
