"""The XFeat convolutional backbone (Potje et al., CVPR 2024) without its keypoint and descriptor heads.

Same module names and state-dict keys as ``XFeatModel`` in ``verlab/accelerated_features``
(``modules/model.py``) for the parts Tiny RoMa keeps: ``skip1``, ``block1`` ... ``block5`` and
``block_fusion``. The heads (``heatmap_head``, ``keypoint_head``, ``fine_matcher``) are deleted by
Tiny RoMa; the full XFeat network (:mod:`densematch.models.xfeat.network`) adds them on top of this class.

Every convolution is a :class:`BasicLayer` (conv without bias, BatchNorm without affine parameters,
ReLU), so the only learned tensors are conv weights and BatchNorm running statistics, plus the two
biased 1x1 convs ``skip1.1`` and ``block_fusion.2``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fused import HAS_ONEDNN_FUSED, folded


class BasicLayer(nn.Module):
    """``Conv2d(bias=False) -> BatchNorm2d(affine=False) -> ReLU`` under the key prefix ``layer.{0,1}``.

    ``(B, in_channels, H, W)`` -> ``(B, out_channels, H', W')``,
    ``H' = (H + 2 padding - kernel_size) // stride + 1``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1):
        super().__init__()
        self.layer = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(out_channels, affine=False),
            nn.ReLU(inplace=True),
        )

    # Under torch.inference_mode, on CPU in float32, an eval-mode layer may fold its BatchNorm into the conv
    # (:func:`~densematch.backbones.fused.folded`: cached until the weights or statistics change) and fuse the
    # ReLU into oneDNN's convolution: ~4 % faster for Tiny RoMa, outputs equal to ~1e-6 (rounding only).
    # Off by default, so that XFeat keeps upstream's exact arithmetic; Tiny RoMa turns it on for its
    # layers. Training, and any call with autograd possible, always runs conv -> BatchNorm -> ReLU.
    fold_batchnorm = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, norm, relu = self.layer
        if (self.fold_batchnorm and not self.training and not norm.training and torch.is_inference_mode_enabled()
                and x.device.type == "cpu" and x.dtype == conv.weight.dtype == torch.float32
                and conv.padding_mode == "zeros" and conv.dilation == (1, 1)):
            weight, bias = folded(conv, norm, memory_format=torch.contiguous_format)
            if conv.in_channels == 1 or not _HAS_FUSED_CONV:
                return _conv(conv, x, weight, bias).relu_()
            return torch.ops.mkldnn._convolution_pointwise(
                x, weight, bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups,
                "relu", [None], "")
        return relu(norm(_conv(conv, x)))


# Private torch kernels used for speed on CPU (present in torch 2.x builds with oneDNN); without them the
# public conv2d path runs (same values up to rounding).
_HAS_FUSED_CONV = HAS_ONEDNN_FUSED
_HAS_IM2COL_CONV = hasattr(torch._C._nn, "thnn_conv2d")


def _conv(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor | None = None,
          bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(x)`` (with ``weight`` / ``bias`` instead of the conv's own when given); on CPU without
    autograd, a single input channel goes through the im2col kernel.

    oneDNN pads a 1-channel NCHW input to its blocked layout and runs XFeat's first layer (1 -> 4 channels
    at full resolution) about 4x slower than the im2col + GEMM kernel, which gives bitwise the same values
    (each output sums its 9 taps in the same order).
    """
    weight = conv.weight if weight is None else weight
    bias = conv.bias if bias is None else bias
    if (_HAS_IM2COL_CONV and conv.in_channels == 1 and x.device.type == "cpu" and conv.groups == 1
            and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))):
        return torch._C._nn.thnn_conv2d(x, weight, conv.kernel_size, bias, conv.stride, conv.padding)
    return conv._conv_forward(x, weight, bias)


def _layers(*specs: tuple) -> nn.Sequential:
    """A Sequential of BasicLayers from ``(in, out, kernel, stride, padding)`` tuples."""
    return nn.Sequential(*(BasicLayer(*spec) for spec in specs))


class XFeatBackbone(nn.Module):
    """XFeat's feature pyramid: 24-channel stride-4 "fine" and 64-channel stride-8 "coarse" features.

    ``forward(x)`` with ``x`` ``(B, C, H, W)`` (any channel count, intensities in [0, 1]; H, W multiples
    of 32 so that the strided blocks line up) returns ``(fine (B, 24, H/4, W/4), coarse (B, 64, H/8, W/8))``.

    The channels are averaged to grey and instance-normalised (no affine, eps 1e-5) without gradient,
    as upstream. Stride 16 and 32 maps are bilinearly upsampled (align_corners=False) to stride 8 and
    summed with the stride-8 map before the fusion block.
    """

    fine_channels = 24
    coarse_channels = 64

    def __init__(self):
        super().__init__()
        self.norm = nn.InstanceNorm2d(1)
        self.skip1 = nn.Sequential(nn.AvgPool2d(4, stride=4), nn.Conv2d(1, 24, 1, stride=1, padding=0))
        self.block1 = _layers((1, 4, 3, 1, 1), (4, 8, 3, 2, 1), (8, 8, 3, 1, 1), (8, 24, 3, 2, 1))
        self.block2 = _layers((24, 24, 3, 1, 1), (24, 24, 3, 1, 1))
        self.block3 = _layers((24, 64, 3, 2, 1), (64, 64, 3, 1, 1), (64, 64, 1, 1, 0))
        self.block4 = _layers((64, 64, 3, 2, 1), (64, 64, 3, 1, 1), (64, 64, 3, 1, 1))
        self.block5 = _layers((64, 128, 3, 2, 1), (128, 128, 3, 1, 1), (128, 128, 3, 1, 1),
                              (128, 64, 1, 1, 0))
        self.block_fusion = nn.Sequential(
            BasicLayer(64, 64, 3, 1, 1),
            BasicLayer(64, 64, 3, 1, 1),
            nn.Conv2d(64, 64, 1, padding=0),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pyramid(self.normalise(x))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, 1, H, W)``: channel mean, instance-normalised, without gradient."""
        with torch.no_grad():
            return self.norm(x.mean(dim=1, keepdim=True))

    def pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised ``(B, 1, H, W)`` -> ``(fine (B, 24, H/4, W/4), coarse (B, 64, H/8, W/8))``."""
        x1 = self.block1(x)
        fine = self.block2(x1 + self.skip1(x))
        x3 = self.block3(fine)
        x4 = self.block4(x3)
        x5 = self.block5(x4)
        size = x3.shape[-2:]
        x4 = F.interpolate(x4, size, mode="bilinear", align_corners=False)
        x5 = F.interpolate(x5, size, mode="bilinear", align_corners=False)
        coarse = self.block_fusion(x3 + x4 + x5)
        return fine, coarse


__all__ = ["BasicLayer", "XFeatBackbone"]
