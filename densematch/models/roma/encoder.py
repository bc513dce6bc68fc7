"""RoMa's encoder: trainable VGG19-BN fine features and frozen DINOv2 coarse features."""

from __future__ import annotations

import torch
from torch import nn

from ...backbones.dinov2 import DINOV2_CONFIGS, DinoV2
from ...backbones.vgg import VGG19BN
from ..amp import autocast


class RomaEncoder(nn.Module):
    """``forward(x)`` with ``x`` ``(B, 3, H, W)`` ImageNet-normalised -> ``{1, 2, 4, 8: VGG, 16: DINOv2}``.

    DINOv2 is frozen and, as in the published code, *not part of the state dict*: checkpoints of the
    matcher hold only ``cnn.*``, and the DINOv2 weights come from their own file. It still follows
    ``.to()``/``.half()`` and stays in eval mode. The DINOv2 map is keyed 16 though its stride is 14.
    """

    def __init__(self, dinov2: str = "vitl14"):
        super().__init__()
        self.cnn = VGG19BN()
        object.__setattr__(self, "dinov2", DinoV2(DINOV2_CONFIGS[dinov2]).eval().requires_grad_(False))
        self.amp_dtype: torch.dtype | None = None

    def _apply(self, fn, recurse=True):  # keep the hidden DINOv2 on the same device/dtype moves
        super()._apply(fn, recurse)
        self.dinov2._apply(fn, recurse)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self.dinov2.eval()
        return self

    def forward(self, x: torch.Tensor, upsample: bool = False,
                coarse: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
        """The pyramid of ``x``; ``upsample``: VGG only (the refinement pass); ``coarse``: the DINOv2 map of
        ``x`` when already computed (:meth:`coarse_features`), which is then not recomputed."""
        with autocast(x.device, self.amp_dtype):
            pyramid = self.cnn(x)
        if not upsample:
            pyramid[16] = self.coarse_features(x) if coarse is None else coarse
        return pyramid

    def coarse_features(self, x: torch.Tensor) -> torch.Tensor:
        """DINOv2's ``(B, C, H / 14, W / 14)`` map of ``x`` ``(B, 3, H, W)`` (no gradient: DINOv2 is frozen)."""
        with torch.no_grad():
            return self.dinov2(x.to(self.dinov2.cls_token.dtype))
