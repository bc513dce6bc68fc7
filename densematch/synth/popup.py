"""An image-guided depth prior ("photo pop-up"): ground plane, vertical segments standing on it, far sky.

No model weights are needed; the depth follows the photograph itself:

1. **Segments.** The image is over-segmented at low resolution (k-means on Lab colour and position,
   then connected components; specks are merged into their largest neighbour). Every depth
   discontinuity of the prior lies on a segment boundary, i.e. on an image edge.
2. **Sky.** Segments touching the top border that are bright, smooth and high in the image are sky:
   depth ``sky_depth`` (far, beyond everything else).
3. **Ground.** A horizon row is drawn (below the sky when there is one); the ground is the plane whose
   inverse depth grows linearly below it (``1 / z = k (y - y_h)``, exact for a pinhole camera looking
   at a plane, with a small random roll). Segments lying mostly below the horizon and wider than tall
   are ground.
4. **Vertical structures.** Every other segment is a vertical plane standing on the ground where its
   bottom edge is (Hoiem et al.'s pop-up): its inverse depth is the ground's at its bottom row, constant
   along the vertical and affine along the horizontal (a random yaw). Segments whose bottom is above the
   horizon stand on a far background plane.

Depth is normalised so that the nearest surface is at depth 1, like :mod:`densematch.synth.prior`.
For real depth, pass a monocular depth model (``--depth-model``) or depth files (``--depth DIR``) to the
engine instead; this prior is the offline fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .camera import CropResize


@dataclass(frozen=True)
class PopupDepthConfig:
    """Ranges of the pop-up scenes (fractions are of the image height unless said otherwise)."""

    segments: tuple[int, int] = (8, 20)  # k-means clusters of the over-segmentation
    work_side: int = 128  # the segmentation runs at this long side (then nearest-upsampled)
    position_weight: float = 0.6  # weight of (x, y) against Lab colour in the clustering
    min_segment: float = 0.008  # segments smaller than this fraction of the image are merged
    horizon: tuple[float, float] = (0.3, 0.6)  # horizon row without sky
    ground_slope: tuple[float, float] = (2.0, 6.0)  # inverse depth per image height below the horizon
    roll: float = 0.08  # largest horizon slope (rows per column)
    yaw: float = 0.6  # largest relative inverse-depth change across a vertical segment's width
    far_inverse: float = 0.04  # inverse depth of the background (nearest ground ~ 1 .. 3)
    sky_depth: float = 200.0  # depth of the sky, in units of the background's depth (before normalising)
    sky_brightness: float = 0.55  # sky segments: mean V (HSV) at least this
    sky_texture: float = 0.06  # sky segments: mean gradient magnitude (of [0, 1] grey) at most this


def segment_image(image: np.ndarray, rng: np.random.Generator, config: PopupDepthConfig) -> np.ndarray:
    """Over-segmentation of ``image`` ``(H, W, 3)`` uint8 -> labels ``(H, W)`` int32 in ``0 .. n-1``."""
    height, width = image.shape[:2]
    scale = config.work_side / max(height, width)
    small_size = (max(8, round(width * scale)), max(8, round(height * scale)))
    small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (3, 3), 0)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32) / 255.0
    h, w = lab.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    features = np.concatenate((lab.reshape(-1, 3), config.position_weight * np.stack((x, y), -1).reshape(-1, 2)), 1)
    clusters = int(rng.integers(config.segments[0], config.segments[1] + 1))
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1e-3)
    _, assigned, _ = cv2.kmeans(features, clusters, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    assigned = assigned.reshape(h, w)
    labels = np.zeros((h, w), dtype=np.int32)
    count = 0
    for cluster in range(clusters):
        n, components = cv2.connectedComponents((assigned == cluster).astype(np.uint8), connectivity=4)
        for component in range(1, n):
            labels[components == component] = count
            count += 1
    labels = _merge_small(labels, count, max(1, int(config.min_segment * h * w)))
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def _merge_small(labels: np.ndarray, count: int, min_area: int) -> np.ndarray:
    """Give every segment smaller than ``min_area`` the label of its most frequent neighbour; relabel 0..n-1."""
    areas = np.bincount(labels.ravel(), minlength=count)
    kernel = np.ones((3, 3), np.uint8)
    for label in np.argsort(areas):
        if areas[label] >= min_area or areas[label] == 0:
            continue
        mask = labels == label
        ring = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask
        if not ring.any():
            continue
        neighbours = np.bincount(labels[ring], minlength=count)
        target = int(np.argmax(neighbours))
        labels[mask] = target
        areas[target] += areas[label]
        areas[label] = 0
    _, dense = np.unique(labels, return_inverse=True)
    return dense.reshape(labels.shape).astype(np.int32)


def sky_segments(image: np.ndarray, labels: np.ndarray, config: PopupDepthConfig) -> np.ndarray:
    """Bool ``(n,)``: segments that touch the top border, lie high, and are bright and smooth."""
    count = int(labels.max()) + 1
    height = image.shape[0]
    value = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 2].astype(np.float32) / 255.0
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)) / 4
    area = np.maximum(np.bincount(labels.ravel(), minlength=count), 1)
    rows = np.arange(height, dtype=np.float32)[:, None].repeat(labels.shape[1], 1)
    mean = {
        name: np.bincount(labels.ravel(), weights=values.ravel(), minlength=count) / area
        for name, values in (("value", value), ("texture", gradient), ("row", rows / height))
    }
    touches_top = np.zeros(count, dtype=bool)
    touches_top[np.unique(labels[0])] = True
    return (
        touches_top
        & (mean["value"] >= config.sky_brightness)
        & (mean["texture"] <= config.sky_texture)
        & (mean["row"] < 0.45)
    )


def popup_depth(
    image: np.ndarray, rng: np.random.Generator, config: PopupDepthConfig | None = None
) -> np.ndarray:
    """Depth ``(H, W)`` float32 (nearest surface at 1) of ``image`` ``(H, W, 3)`` uint8 as a pop-up scene."""
    config = config or PopupDepthConfig()
    height, width = image.shape[:2]
    labels = segment_image(image, rng, config)
    count = int(labels.max()) + 1
    sky = sky_segments(image, labels, config)[labels]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    horizon = rng.uniform(*config.horizon) * height
    if sky.any():  # the horizon is at or below the sky's lower part
        horizon = max(horizon, float(np.percentile(y[sky], 90)))
    horizon = min(horizon, 0.9 * height)
    roll = rng.uniform(-config.roll, config.roll)
    below = (y - (horizon + roll * (x - width / 2))) / height  # > 0 under the horizon
    slope = rng.uniform(*config.ground_slope)
    ground = np.maximum(config.far_inverse, config.far_inverse + slope * below)  # inverse depth
    inverse = ground.copy()
    for label in range(count):
        mask = labels == label
        if not mask.any() or sky[mask].all():
            continue
        rows, cols = np.nonzero(mask)
        top, bottom = np.percentile(rows, 5), np.percentile(rows, 97)
        left, right = cols.min(), cols.max()
        lies_low = np.mean(below[mask] > 0.02) > 0.8
        flat = (bottom - top) < 0.7 * (right - left + 1)
        if lies_low and flat and rng.random() < 0.85:
            continue  # a ground segment: keeps the ground plane
        centre = int(np.clip(np.median(cols), 0, width - 1))
        base = ground[int(np.clip(bottom, 0, height - 1)), centre]
        yaw = rng.uniform(-config.yaw, config.yaw) / max(right - left + 1, 1)
        plane = base * (1 + yaw * (x[mask] - centre))
        inverse[mask] = np.maximum(plane, 0.5 * config.far_inverse)
    depth = 1.0 / inverse
    depth[sky] = config.sky_depth / config.far_inverse
    return (depth / depth.min()).astype(np.float32)


class PopupDepth:
    """A depth source drawing a :func:`popup_depth` scene from every image (deterministic per ``rng``)."""

    kind = "depth"

    def __init__(self, config: PopupDepthConfig | None = None):
        self.config = config or PopupDepthConfig()

    def __call__(
        self, name: str, image: np.ndarray, crop: CropResize, rng: np.random.Generator
    ) -> np.ndarray:
        return popup_depth(image, rng, self.config)
