"""VGG19-BN convolutional features (torchvision key layout ``layers.{i}``), as RoMa uses them.

``layers`` is ``vgg19_bn().features[:40]``: 16 conv/BN/ReLU triplets and the first four max-pools.
"""

from __future__ import annotations

import torch
from torch import nn

from .fused import conv_bn, fast_path

# torchvision's configuration "E" (VGG19): channels per conv, "M" = 2x2 max-pool
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M")


class VGG19BN(nn.Module):
    """Fine features of RoMa. ``forward(x)`` with ``x`` ``(B, 3, H, W)`` returns ``{1: (B,64,H,W),
    2: (B,128,H/2,W/2), 4: (B,256,H/4,W/4), 8: (B,512,H/8,W/8)}``: the activation before each max-pool."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG19_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.BatchNorm2d(item), nn.ReLU(True)]
                channels = item
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        if fast_path(self, x):
            return self._forward_folded(x)
        features = {}
        scale = 1
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            if isinstance(layer, nn.MaxPool2d):
                features[scale] = x
                scale *= 2
                if index == last:  # upstream runs the last pool and discards it
                    break
            x = layer(x)
        return features

    def _forward_folded(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Eval-mode CPU inference: each conv/BN/ReLU triplet as one folded oneDNN conv, channels-last
        activations (see :mod:`densematch.backbones.fused`). Same values up to float32 rounding; the
        features are returned channels-last."""
        features = {}
        scale = 1
        layers = self.layers
        index = 0
        while index < len(layers):
            layer = layers[index]
            if isinstance(layer, nn.MaxPool2d):
                features[scale] = x
                scale *= 2
                if index == len(layers) - 1:
                    break
                x = layer(x)
                index += 1
            else:
                x = conv_bn(x, layer, layers[index + 1], relu=True)
                index += 3
        return features
