"""Pictures of matching results: match lines between two images, dense warps and certainty maps.

Drawing is plain OpenCV on RGB uint8 arrays (no matplotlib needed). Coordinates are OpenCV pixels of
the images as given (see :mod:`densematch.conventions`).
"""

from __future__ import annotations

import cv2
import numpy as np

from .io import atomic_path, load_image

BAR_HEIGHT = 30  # legend strip above each picture, px
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GREEN, _RED, _INK, _PAPER = (40, 200, 60), (230, 40, 40), (255, 255, 255), (32, 32, 32)


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] ``(...)`` -> RGB uint8 ``(..., 3)`` with the turbo colour map (blue low, red high)."""
    scaled = np.clip(np.asarray(values, dtype=np.float64), 0, 1) * 255
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_TURBO)[:, 0, ::-1]
    return lut[np.round(scaled).astype(np.uint8)]


def _fit_height(image, height: int) -> tuple[np.ndarray, float]:
    array = np.asarray(load_image(image))
    scale = height / array.shape[0]
    width = max(1, round(array.shape[1] * scale))
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA), scale


def legend_bar(width: int, items: list[tuple[str, tuple[int, int, int] | None]]) -> np.ndarray:
    """A dark strip ``(BAR_HEIGHT, width, 3)`` with text items, each after an optional colour swatch."""
    bar = np.full((BAR_HEIGHT, width, 3), _PAPER, np.uint8)
    x = 8
    for text, colour in items:
        if colour is not None:
            cv2.rectangle(bar, (x, 9), (x + 12, 21), colour, -1)
            x += 18
        cv2.putText(bar, text, (x, 20), _FONT, 0.45, _INK, 1, cv2.LINE_AA)
        x += cv2.getTextSize(text, _FONT, 0.45, 1)[0][0] + 16
    return bar


def _certainty_scale(width: int) -> np.ndarray:
    """A small horizontal colour bar labelled 0 .. 1, to the right of a legend."""
    ramp = colormap(np.linspace(0, 1, 100))[None].repeat(10, axis=0)
    strip = np.full((BAR_HEIGHT, width, 3), _PAPER, np.uint8)
    x0 = width - 130
    if x0 > 0:
        strip[10:20, x0 + 12 : x0 + 112] = ramp
        cv2.putText(strip, "0", (x0, 20), _FONT, 0.4, _INK, 1, cv2.LINE_AA)
        cv2.putText(strip, "1", (x0 + 116, 20), _FONT, 0.4, _INK, 1, cv2.LINE_AA)
    return strip


def draw_matches(image0, image1, kpts0: np.ndarray, kpts1: np.ndarray, scores: np.ndarray | None = None,
                 inliers: np.ndarray | None = None, title: str = "", max_lines: int = 250, height: int = 480,
                 seed: int = 0) -> np.ndarray:
    """Side-by-side RGB picture ``(BAR_HEIGHT + height, W0' + W1', 3)`` uint8 with match lines and a legend.

    With ``inliers`` (``(N,)`` bool, e.g. from a robust fit) lines are green (inlier) or red (outlier) and
    the legend counts both; otherwise they are coloured by ``scores`` in [0, 1] (turbo: blue low, red
    high) with a colour scale. At most ``max_lines`` matches are drawn (a fixed random subset that keeps
    the inlier/outlier proportions); every match is counted.
    """
    kpts0, kpts1 = np.asarray(kpts0, np.float64).reshape(-1, 2), np.asarray(kpts1, np.float64).reshape(-1, 2)
    im0, s0 = _fit_height(image0, height)
    im1, s1 = _fit_height(image1, height)
    canvas = np.concatenate((im0, im1), axis=1)
    n = len(kpts0)
    order = np.random.default_rng(seed).permutation(n)[:max_lines] if n > max_lines else np.arange(n)
    if inliers is not None:
        inliers = np.asarray(inliers, bool).reshape(-1)
        colours = np.where(inliers[:, None], np.array(_GREEN), np.array(_RED)).astype(np.uint8)
        order = np.concatenate((order[~inliers[order]], order[inliers[order]]))  # inliers drawn on top
        count = int(inliers.sum())
        share = f" ({100 * count / n:.0f}%)" if n else ""
        items = [(title, None), (f"inliers {count}{share}", _GREEN), (f"outliers {n - count}", _RED)]
    else:
        values = np.ones(n) if scores is None else np.asarray(scores, np.float64).reshape(-1)
        colours = colormap(values)
        order = order[np.argsort(values[order], kind="stable")]  # most certain drawn last, on top
        items = [(title, None), (f"{n} matches, colour = certainty / score", None)]
    overlay = canvas.copy()
    offset = np.array([im0.shape[1], 0])
    for i in order:
        p0 = tuple(np.round((kpts0[i] + 0.5) * s0 - 0.5).astype(int))
        p1 = tuple(np.round((kpts1[i] + 0.5) * s1 - 0.5 + offset).astype(int))
        colour = tuple(int(c) for c in colours[i])
        cv2.line(overlay, p0, p1, colour, 1, cv2.LINE_AA)
        cv2.circle(overlay, p0, 2, colour, -1, cv2.LINE_AA)
        cv2.circle(overlay, p1, 2, colour, -1, cv2.LINE_AA)
    canvas = cv2.addWeighted(overlay, 0.7, canvas, 0.3, 0)
    bar = legend_bar(canvas.shape[1], [item for item in items if item[0]])
    if inliers is None:
        bar = np.maximum(bar, _certainty_scale(canvas.shape[1]))
    return np.concatenate((bar, canvas), axis=0)


def draw_dense(image0, image1, warp: np.ndarray, certainty: np.ndarray, title: str = "",
               height: int = 360) -> np.ndarray:
    """Three panels ``(BAR_HEIGHT + height, 3 W0', 3)``: image 0, image 1 pulled onto image 0 by the warp
    (faded to white where uncertain), and the certainty map.

    ``warp`` ``(H0, W0, 2)``: OpenCV pixel of image 1 for each pixel of image 0; ``certainty`` ``(H0, W0)``.
    """
    im0, scale = _fit_height(image0, height)
    h, w = im0.shape[:2]
    im1 = np.asarray(load_image(image1))
    field = cv2.resize(np.asarray(warp, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    cert = cv2.resize(np.asarray(certainty, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    pulled = cv2.remap(im1, field[..., 0], field[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=(255, 255, 255))
    alpha = np.clip(cert, 0, 1)[..., None]
    blended = (alpha * pulled + (1 - alpha) * 255).round().astype(np.uint8)
    captions = (f"{title}: image 0" if title else "image 0", "image 1 warped onto image 0 (white: uncertain)",
                "certainty")
    bars = [legend_bar(w, [(caption, None)]) for caption in captions]
    bars[-1] = np.maximum(bars[-1], _certainty_scale(w))
    panels = np.concatenate((im0, blended, colormap(cert)), axis=1)
    return np.concatenate((np.concatenate(bars, axis=1), panels), axis=0)


def save_rgb(path, image: np.ndarray) -> None:
    """Write an RGB uint8 array atomically (format from the file extension)."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write image {path}")


def warp_image(warp, certainty, im_A=None, im_B=None, im_A_path=None, im_B_path=None, device=None,
               symmetric: bool = True, save_path=None):
    """romatch ``visualize_warp``: B's colours pulled onto A (and A's onto B when symmetric), blended with
    white by certainty. ``warp`` ``(H, 2W, 4)`` / ``(H, W, 4)``; returns ``(3, H, 2W)`` / ``(3, H, W)``."""
    import torch
    import torch.nn.functional as F

    from .preprocess import to_tensor

    def rgb(image, width, height):
        return to_tensor(load_image(image).resize((width, height))).to(device)

    device = warp.device if device is None else torch.device(device)
    warp, certainty = warp.to(device).float(), certainty.to(device).float()
    height, width2, _ = warp.shape
    width = width2 // 2 if symmetric else width2
    im_A = im_A if im_A is not None else im_A_path
    im_B = im_B if im_B is not None else im_B_path
    x_b = im_B.to(device) if isinstance(im_B, torch.Tensor) else rgb(im_B, width, height)
    out = F.grid_sample(x_b[None], warp[:, :width, 2:][None], mode="bilinear", align_corners=False)[0]
    if symmetric:
        x_a = im_A.to(device) if isinstance(im_A, torch.Tensor) else rgb(im_A, width, height)
        back = F.grid_sample(x_a[None], warp[:, width:, :2][None], mode="bilinear", align_corners=False)[0]
        out = torch.cat((out, back), dim=2)
    vis = certainty * out + (1 - certainty) * torch.ones_like(out)
    if save_path is not None:
        array = (vis.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        save_rgb(save_path, array)
    return vis
