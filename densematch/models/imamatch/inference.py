"""Images as given -> IMAMatch network input -> matches in the images' own pixels.

As upstream's test loaders: grey (OpenCV's weights), the longer side resized to ``resize`` with
``cv2.resize`` (bilinear), divided by 255. With ``pad_to_square`` (MegaDepth loader) the image is then
zero-padded bottom-right to ``resize x resize``; without it (ScanNet) each side is rounded to the nearest
multiple of 32 (1296x968 -> 640x480, upstream's ScanNet size). An image whose longer side already
equals ``resize`` and whose sides are multiples of 32 is not resampled. The two inputs are padded to a
common size when they differ (the network runs them in one batch).

Matches are mapped back with the per-axis resize factor ``s`` in OpenCV's convention,
``x_image = (x_net + 0.5) * s - 0.5``, and matches whose point lies in the padding are dropped.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ...io import load_image


def network_size(width: int, height: int, resize: int, pad_to_square: bool) -> tuple[int, int]:
    """``(W, H)`` of the resized image content (before padding)."""
    scale = resize / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    if not pad_to_square:
        w, h = max(32, round(w / 32) * 32), max(32, round(h / 32) * 32)
    return w, h


def prepare_grey(source, resize: int, pad_to_square: bool) -> tuple[torch.Tensor, tuple[float, float], tuple[int, int]]:
    """One image -> ``((1, 1, H, W) float32 in [0, 1], (sx, sy) network->image factors, (width, height))``."""
    rgb = np.asarray(load_image(source, "RGB"))
    height, width = rgb.shape[:2]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    w, h = network_size(width, height, resize, pad_to_square)
    if (w, h) != (width, height):
        grey = cv2.resize(grey, (w, h), interpolation=cv2.INTER_LINEAR)
    tensor = torch.from_numpy(grey).float()[None, None] / 255.0
    if pad_to_square:
        tensor = F.pad(tensor, (0, resize - w, 0, resize - h))
    return tensor, (width / w, height / h), (width, height)


def _to_image(points: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    factors = points.new_tensor(scale)
    return (points + 0.5) * factors - 0.5


def _inside(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    w, h = size
    return (points[:, 0] >= -0.5) & (points[:, 0] <= w - 0.5) & (points[:, 1] >= -0.5) & (points[:, 1] <= h - 0.5)


def match_images(model, image0, image1) -> dict:
    """See :meth:`IMAMatch.match_images`."""
    s = model.settings
    device = next(model.parameters()).device
    t0, scale0, size0 = prepare_grey(image0, s.resize, s.pad_to_square)
    t1, scale1, size1 = prepare_grey(image1, s.resize, s.pad_to_square)
    h, w = max(t0.shape[-2], t1.shape[-2]), max(t0.shape[-1], t1.shape[-1])
    t0 = F.pad(t0, (0, w - t0.shape[-1], 0, h - t0.shape[-2]))
    t1 = F.pad(t1, (0, w - t1.shape[-1], 0, h - t1.shape[-2]))
    out = model(t0.to(device), t1.to(device))
    kpts0, kpts1 = _to_image(out["kpts0"], scale0), _to_image(out["kpts1"], scale1)
    keep = _inside(kpts0, size0) & _inside(kpts1, size1)
    return {
        "kpts0": kpts0[keep].float(), "kpts1": kpts1[keep].float(), "scores": out["scores"][keep].float(),
        "reverse": bool(out["reverse"]), "pose_refinement": "ba" if s.use_ba else None,
    }
