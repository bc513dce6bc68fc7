"""Pictures of matching results: match lines between two images, and certainty-blended warps."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .io import atomic_path, load_image
from .models.preprocess import to_tensor


def draw_matches(image0, image1, kpts0: np.ndarray, kpts1: np.ndarray, scores: np.ndarray | None = None,
                 max_lines: int = 300, height: int = 480, seed: int = 0) -> np.ndarray:
    """Side-by-side RGB picture ``(height, W0' + W1', 3)`` uint8 with lines between matched OpenCV pixels.

    At most ``max_lines`` matches are drawn (a fixed random subset); colour encodes the score relative
    to the best one (red low, green high).
    """
    im0, im1 = np.asarray(load_image(image0)), np.asarray(load_image(image1))
    s0, s1 = height / im0.shape[0], height / im1.shape[0]
    im0 = cv2.resize(im0, (max(1, round(im0.shape[1] * s0)), height), interpolation=cv2.INTER_AREA)
    im1 = cv2.resize(im1, (max(1, round(im1.shape[1] * s1)), height), interpolation=cv2.INTER_AREA)
    canvas = np.concatenate((im0, im1), axis=1).copy()
    n = len(kpts0)
    order = np.random.default_rng(seed).permutation(n)[:max_lines] if n > max_lines else np.arange(n)
    scores = np.ones(n) if scores is None else np.clip(np.asarray(scores, dtype=np.float64), 0, None)
    scores = scores / scores.max() if n and scores.max() > 0 else scores  # colour by relative score
    for i in order:
        p0 = (kpts0[i] + 0.5) * s0 - 0.5
        p1 = (kpts1[i] + 0.5) * s1 - 0.5 + np.array([im0.shape[1], 0])
        color = (int(255 * (1 - scores[i])), int(255 * scores[i]), 60)
        cv2.line(canvas, tuple(np.round(p0).astype(int)), tuple(np.round(p1).astype(int)), color, 1, cv2.LINE_AA)
        cv2.circle(canvas, tuple(np.round(p0).astype(int)), 2, color, -1, cv2.LINE_AA)
        cv2.circle(canvas, tuple(np.round(p1).astype(int)), 2, color, -1, cv2.LINE_AA)
    return canvas


def save_rgb(path, image: np.ndarray) -> None:
    """Write an RGB uint8 array atomically (format from the file extension)."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write image {path}")


def _rgb_tensor(image, width: int, height: int, device) -> torch.Tensor:
    return to_tensor(load_image(image).resize((width, height))).to(device)


def warp_image(warp: torch.Tensor, certainty: torch.Tensor, im_A=None, im_B=None, im_A_path=None, im_B_path=None,
               device=None, symmetric: bool = True, save_path=None) -> torch.Tensor:
    """romatch ``visualize_warp``: B's colours pulled onto A (and A's onto B when symmetric), blended with
    white by certainty. ``warp`` ``(H, 2W, 4)`` / ``(H, W, 4)``; returns ``(3, H, 2W)`` / ``(3, H, W)``."""
    device = warp.device if device is None else torch.device(device)
    warp, certainty = warp.to(device).float(), certainty.to(device).float()
    height, width2, _ = warp.shape
    width = width2 // 2 if symmetric else width2
    im_A = im_A if im_A is not None else im_A_path
    im_B = im_B if im_B is not None else im_B_path
    x_b = im_B.to(device) if isinstance(im_B, torch.Tensor) else _rgb_tensor(im_B, width, height, device)
    out = F.grid_sample(x_b[None], warp[:, :width, 2:][None], mode="bilinear", align_corners=False)[0]
    if symmetric:
        x_a = im_A.to(device) if isinstance(im_A, torch.Tensor) else _rgb_tensor(im_A, width, height, device)
        back = F.grid_sample(x_a[None], warp[:, width:, :2][None], mode="bilinear", align_corners=False)[0]
        out = torch.cat((out, back), dim=2)
    vis = certainty * out + (1 - certainty) * torch.ones_like(out)
    if save_path is not None:
        array = (vis.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        save_rgb(save_path, array)
    return vis
