"""Convolutional building blocks of MBFormer (upstream ``attention_model.py`` / ``networks.py``).

The ``nn.Sequential`` layouts, including the ``nn.Identity`` placeholders, keep upstream's parameter
indices (``net.1.weight`` ...), so that a checkpoint saved by the reference code loads.
"""

from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth per sample (training only; identity in eval mode or with probability 0)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class ConvBNGelu(nn.Module):
    """``k x k`` conv (stride ``s``, "same" padding, no bias), BatchNorm, GELU."""

    def __init__(self, c_in: int, c_out: int, k: int, s: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _mb_layers(dim_in: int, dim_out: int, ratio: float, stride: int) -> nn.Sequential:
    mid = int(dim_in * ratio)
    return nn.Sequential(
        nn.Identity(),  # upstream's optional pre-norm (off)
        nn.Conv2d(dim_in, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.GELU(),
        nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.GELU(),
        nn.Conv2d(mid, dim_out, 1, bias=False), nn.BatchNorm2d(dim_out),
    )


class MB(nn.Module):
    """Inverted bottleneck: 1x1 expand, BN, GELU, depthwise 3x3, BN, GELU, 1x1, BN (no residual)."""

    def __init__(self, dim_in: int, dim_out: int, ratio: float):
        super().__init__()
        self.net = _mb_layers(dim_in, dim_out, ratio, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResidualMB(nn.Module):
    """MB with stride and a shortcut (3x3 max-pool when strided, 1x1 conv when the width changes)."""

    def __init__(self, dim_in: int, dim_out: int, stride: int, ratio: float = 1.0, dropout: float = 0.0):
        super().__init__()
        self.net = _mb_layers(dim_in, dim_out, ratio, stride)
        self.main = nn.Sequential(
            nn.MaxPool2d(3, stride, 1) if stride > 1 else nn.Identity(),
            nn.Conv2d(dim_in, dim_out, 1, bias=False) if dim_in != dim_out else nn.Identity(),
        )
        self.dropout = DropPath(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.dropout(self.net(x))


class ConvBlock(nn.Module):
    """Two residual MB units (upstream names them ``conv`` and ``mlp``)."""

    def __init__(self, dim: int, ratio: float, dropout: float = 0.0):
        super().__init__()
        self.conv = MB(dim, dim, ratio)
        self.mlp = MB(dim, dim, ratio)
        self.dropout = DropPath(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.conv(x))
        return x + self.dropout(self.mlp(x))
