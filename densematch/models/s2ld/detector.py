"""S2LD's keypoint detector and feature adjuster (upstream ``KeypointDetector`` / ``FeatureAdjuster``).

The detector predicts, for every 1/8 cell, an offset ``tanh(.) * cross_ratio`` in cell units/2 and a
sigmoid score. S2LD multiplies the offset by ``(H / H_c) / 2 = 4`` to get pixels *relative to the cell's
top-left corner* (``cell * 8``): keypoints span ``[-4.8, 4.8]`` px around the corner, not the cell.
The adjuster makes the coarse descriptors keypoint-aware: conv-BN-ReLU on ``[coarse feature, raw offset]``.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import DetectorConfig


def conv_block(inp: int, out: int, kernel: int = 3, stride: int = 1, norm: bool = True,
               activation: str = "relu") -> nn.Sequential:
    """Conv (no bias) [+ BN] + activation, as upstream's ``conv_bn`` (parameter names ``0.*``, ``1.*``)."""
    layers: list[nn.Module] = [nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, bias=False)]
    if norm:
        layers.append(nn.BatchNorm2d(out))
    layers.append({"relu": nn.ReLU(inplace=True), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid()}[activation])
    return nn.Sequential(*layers)


def _head(dims: list[int], last_activation: str) -> nn.Sequential:
    n = len(dims) - 1
    return nn.Sequential(*(
        conv_block(dims[i], dims[i + 1], norm=i < n - 1, activation="relu" if i < n - 1 else last_activation)
        for i in range(n)
    ))


class KeypointDetector(nn.Module):
    def __init__(self, config: DetectorConfig, coarse_dim: int = 256, fine_dim: int = 128):
        super().__init__()
        c, f = config.coarse_dims, config.fine_dims
        self.cross_ratio = config.cross_ratio
        self.conv_c0 = conv_block(coarse_dim, c[0])
        self.conv_c1 = conv_block(c[0], c[1])
        self.conv_f0 = conv_block(fine_dim, f[0], kernel=5, stride=2)
        self.conv_f1 = conv_block(f[0], f[1], kernel=3, stride=2)
        self.k_regressor = _head([c[1] + f[1], *config.offset_dims], "tanh")
        self.s_regressor = _head([c[1] + f[1], *config.score_dims], "sigmoid")

    def forward(self, feat_c: torch.Tensor, feat_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feat_c (B, 256, h, w)``, ``feat_f (B, 128, 4h, 4w)`` -> raw offsets ``(B, 2, h, w)`` in
        ``[-cross_ratio, cross_ratio]`` and scores ``(B, 1, h, w)`` in ``(0, 1)``."""
        x = torch.cat([self.conv_c1(self.conv_c0(feat_c)), self.conv_f1(self.conv_f0(feat_f))], dim=1)
        return self.k_regressor(x) * self.cross_ratio, self.s_regressor(x)


class FeatureAdjuster(nn.Module):
    def __init__(self, coarse_dim: int = 256, hidden: tuple[int, ...] = (384,)):
        super().__init__()
        dims = [coarse_dim + 2, *hidden, coarse_dim]
        self.c_convs = nn.Sequential(*(conv_block(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)))

    def forward(self, feat_c: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """``feat_c (B, C, h, w)``, raw detector offsets ``(B, 2, h, w)`` -> ``(B, C, h, w)``."""
        return self.c_convs(torch.cat([feat_c, offsets], dim=1))
