"""The page's pictures: matches coloured inlier / outlier with counts, and a dense model's warp and certainty.

Plain OpenCV drawing on RGB uint8 arrays; coordinates are OpenCV pixels of the images as given.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from ..viz import BAR_HEIGHT
from ..viz import legend_bar as _caption

BAR = BAR_HEIGHT  # height of the caption strip above each picture, px (the library's legend strip)

_INLIER, _OUTLIER, _NEUTRAL = (46, 204, 64), (240, 60, 50), (255, 200, 0)


def _fit(image: Image.Image, height: int) -> tuple[np.ndarray, float]:
    scale = height / image.height
    width = max(1, round(image.width * scale))
    return np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)), scale


def draw_inliers(image0: Image.Image, image1: Image.Image, kpts0: np.ndarray, kpts1: np.ndarray,
                 inliers: np.ndarray | None, title: str, height: int = 420, max_lines: int = 300,
                 seed: int = 0) -> np.ndarray:
    """Side by side ``(BAR + height, W0' + W1', 3)``: a keypoint per match and lines for a fixed random
    subset of ``max_lines``, green for inliers and red for outliers (yellow when no fit was asked for,
    ``inliers=None``); the caption counts every match."""
    im0, s0 = _fit(image0, height)
    im1, s1 = _fit(image1, height)
    canvas = np.concatenate((im0, im1), axis=1)
    overlay = canvas.copy()
    n = len(kpts0)
    p0 = np.round((np.asarray(kpts0).reshape(-1, 2) + 0.5) * s0 - 0.5).astype(int)
    p1 = np.round((np.asarray(kpts1).reshape(-1, 2) + 0.5) * s1 - 0.5).astype(int) + [im0.shape[1], 0]
    good = np.ones(n, bool) if inliers is None else np.asarray(inliers, bool)
    lines = np.random.default_rng(seed).permutation(n)[:max_lines]
    lines = np.concatenate((lines[~good[lines]], lines[good[lines]]))  # inliers on top
    for i in lines:
        colour = _NEUTRAL if inliers is None else (_INLIER if good[i] else _OUTLIER)
        cv2.line(overlay, tuple(p0[i]), tuple(p1[i]), colour, 1, cv2.LINE_AA)
    for i in np.concatenate((np.flatnonzero(~good), np.flatnonzero(good))):
        colour = _NEUTRAL if inliers is None else (_INLIER if good[i] else _OUTLIER)
        cv2.circle(overlay, tuple(p0[i]), 2, colour, -1, cv2.LINE_AA)
        cv2.circle(overlay, tuple(p1[i]), 2, colour, -1, cv2.LINE_AA)
    canvas = cv2.addWeighted(overlay, 0.85, canvas, 0.15, 0)
    if inliers is None:
        items = [(title, None), (f"{n} matches (no geometry fitted)", _NEUTRAL)]
    else:
        count = int(good.sum())
        share = f" ({100 * count / n:.0f}%)" if n else ""
        items = [(title, None), (f"inliers {count}{share}", _INLIER), (f"outliers {n - count}", _OUTLIER)]
    return np.concatenate((_caption(canvas.shape[1], items), canvas), axis=0)


def turbo(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] ``(H, W)`` -> RGB ``(H, W, 3)`` uint8 with the turbo colour map (blue low, red high)."""
    scaled = np.round(np.clip(values, 0, 1) * 255).astype(np.uint8)
    return cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO)[..., ::-1]


def draw_dense(image0: Image.Image, image1: Image.Image, warp: np.ndarray, certainty: np.ndarray, title: str,
               height: int = 300) -> np.ndarray:
    """Three panels ``(BAR + height, 3 W0', 3)``: image 0, image 1 pulled onto image 0 by the warp (faded
    to white where uncertain) and the certainty map (turbo: blue 0, red 1).

    ``warp`` ``(H0, W0, 2)`` holds the OpenCV pixel of image 1 matched to each pixel of image 0,
    ``certainty`` ``(H0, W0)`` in [0, 1].
    """
    im0, scale = _fit(image0, height)
    h, w = im0.shape[:2]
    field = cv2.resize(np.asarray(warp, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    cert = np.clip(cv2.resize(np.asarray(certainty, np.float32), (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)
    pulled = cv2.remap(np.asarray(image1.convert("RGB")), field[..., 0], field[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 255, 255))
    faded = (cert[..., None] * pulled + (1 - cert[..., None]) * 255).round().astype(np.uint8)
    panels = np.concatenate((im0, faded, turbo(cert)), axis=1)
    items = [(title, None), ("image 0 | image 1 warped onto image 0 | certainty (blue 0 .. red 1)", None)]
    return np.concatenate((_caption(panels.shape[1], items), panels), axis=0)


def tile(pictures: list[np.ndarray], columns: int = 3, gap: int = 8) -> np.ndarray:
    """RGB pictures in rows of ``columns`` (left to right, then down) on white, ``gap`` px apart; each row
    is as high as its highest picture (the page's pictures of one pair share their height)."""
    rows = []
    for start in range(0, len(pictures), columns):
        row = pictures[start : start + columns]
        height = max(p.shape[0] for p in row)
        padded = [np.pad(p, ((0, height - p.shape[0]), (0, gap), (0, 0)), constant_values=255) for p in row]
        rows.append(np.concatenate(padded, axis=1)[:, :-gap])
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)[:-gap]
