"""LoFTR's ResNet-FPN backbone with outputs at 1/8 (coarse) and 1/2 (fine) resolution.

The module and parameter names are LoFTR's, so published LoFTR-family checkpoints load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ResNetFPNConfig:
    in_channels: int = 1  # grey input
    initial_dim: int = 128  # channels of the stride-2 stem
    block_dims: tuple[int, int, int] = (128, 196, 256)  # channels at 1/2, 1/4, 1/8 (1/8 = coarse, 1/2 out = first)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=False)


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with a residual (1x1 conv + BN shortcut when strided)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.conv2 = _conv3x3(planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1:
            self.downsample = nn.Sequential(_conv1x1(in_planes, planes, stride=stride), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


def _fpn_merge(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(_conv3x3(in_dim, in_dim), nn.BatchNorm2d(in_dim), nn.LeakyReLU(), _conv3x3(in_dim, out_dim))


class ResNetFPN82(nn.Module):
    """ResNet-18-like encoder (two blocks per stage) plus a top-down FPN."""

    def __init__(self, config: ResNetFPNConfig = ResNetFPNConfig()):
        super().__init__()
        d1, d2, d3 = config.block_dims
        self.conv1 = nn.Conv2d(config.in_channels, config.initial_dim, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(config.initial_dim)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(config.initial_dim, d1, 1), BasicBlock(d1, d1))  # 1/2
        self.layer2 = nn.Sequential(BasicBlock(d1, d2, 2), BasicBlock(d2, d2))  # 1/4
        self.layer3 = nn.Sequential(BasicBlock(d2, d3, 2), BasicBlock(d3, d3))  # 1/8
        self.layer3_outconv = _conv1x1(d3, d3)
        self.layer2_outconv = _conv1x1(d2, d3)
        self.layer2_outconv2 = _fpn_merge(d3, d2)
        self.layer1_outconv = _conv1x1(d1, d2)
        self.layer1_outconv2 = _fpn_merge(d2, d1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C_in, H, W)`` with H, W multiples of 8 -> coarse ``(B, d3, H/8, W/8)``, fine ``(B, d1, H/2, W/2)``."""
        x1 = self.layer1(self.relu(self.bn1(self.conv1(x))))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x3_out = self.layer3_outconv(x3)
        up3 = F.interpolate(x3_out, scale_factor=2.0, mode="bilinear", align_corners=True)
        x2_out = self.layer2_outconv2(self.layer2_outconv(x2) + up3)
        up2 = F.interpolate(x2_out, scale_factor=2.0, mode="bilinear", align_corners=True)
        x1_out = self.layer1_outconv2(self.layer1_outconv(x1) + up2)
        return x3_out, x1_out
