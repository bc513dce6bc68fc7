"""A procedural depth prior: smooth, piecewise-planar scenes with occlusion edges, no model weights needed.

A plane in front of a pinhole camera has an inverse depth that is *affine in pixel coordinates*
(``n . X = c`` with ``X = z K^-1 [u, v, 1]`` gives ``1 / z = n . K^-1 [u, v, 1] / c``), whatever ``K`` is.
So a scene is built in inverse depth:

* a *room*: the pointwise maximum of a few affine inverse-depth planes (back wall, floor, side walls): the
  nearest hit of each ray on the inside of a convex box, with creases where the walls meet;
* *objects*: planar patches (ellipses and convex polygons) nearer than the room, pasted by a z-test, which
  creates occlusion edges.

Depth is normalised so that the nearest surface is at depth 1 (the convention of L2M's disparity lifting).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .camera import CropResize


@dataclass(frozen=True)
class ProceduralDepthConfig:
    """Ranges of the random scenes."""

    walls: tuple[int, int] = (2, 4)  # planes of the room, besides the back wall
    objects: tuple[int, int] = (2, 6)  # planar patches in front of the room
    object_size: tuple[float, float] = (0.15, 0.5)  # patch radius, as a fraction of the image side
    object_nearness: tuple[float, float] = (
        1.3,
        4.0,
    )  # patch inverse depth / room inverse depth at its centre
    tilt: float = 0.6  # largest inverse-depth slope of a patch across the image, relative to its own value
    far_depth: float = 30.0  # depth of the back wall before normalisation (near walls are closer)


def procedural_depth(
    height: int, width: int, rng: np.random.Generator, config: ProceduralDepthConfig | None = None
) -> np.ndarray:
    """A random piecewise-planar depth map ``(height, width)`` float32, nearest surface at depth 1."""
    config = config or ProceduralDepthConfig()
    side = max(height, width)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x = (x - (width - 1) / 2) / side  # in [-0.5, 0.5]
    y = (y - (height - 1) / 2) / side
    back = 1.0 / config.far_depth
    inverse = np.full((height, width), back, dtype=np.float32)
    directions = rng.permutation([(0.0, 1.0), (1.0, 0.0), (-1.0, 0.0), (0.0, -1.0)])  # floor, walls, ceiling
    for dx, dy in directions[: rng.integers(config.walls[0], config.walls[1] + 1)]:
        # a wall rising from behind the back wall to near the camera towards one image border
        slope = rng.uniform(2.0, 8.0) * back
        offset = rng.uniform(-0.35, 0.1)
        inverse = np.maximum(inverse, back + slope * ((dx * x + dy * y) - offset) * 4)
    for _ in range(rng.integers(config.objects[0], config.objects[1] + 1)):
        mask = _random_shape(height, width, side, rng, config.object_size)
        if not mask.any():
            continue
        cy, cx = (float(c.mean()) for c in np.nonzero(mask))
        centre = inverse[int(cy), int(cx)] * rng.uniform(*config.object_nearness)
        gx, gy = rng.uniform(-config.tilt, config.tilt, size=2) * centre
        plane = centre + gx * (x - x[0, int(cx)]) + gy * (y - y[int(cy), 0])
        inverse = np.where(mask & (plane > inverse), plane, inverse)
    depth = 1.0 / np.maximum(inverse, 1e-6)
    return (depth / depth.min()).astype(np.float32)


def _random_shape(
    height: int, width: int, side: int, rng: np.random.Generator, size_range: tuple[float, float]
) -> np.ndarray:
    """A random filled ellipse or convex polygon (bool mask)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    centre = (int(rng.uniform(0.1, 0.9) * width), int(rng.uniform(0.1, 0.9) * height))
    radius = rng.uniform(*size_range) * side
    if rng.random() < 0.5:
        axes = (max(1, int(radius)), max(1, int(radius * rng.uniform(0.3, 1.0))))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, thickness=-1)
    else:
        count = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=count))
        radii = radius * rng.uniform(0.5, 1.0, size=count)
        points = np.stack((centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)), axis=1)
        cv2.fillConvexPoly(mask, cv2.convexHull(points.astype(np.int32)), 1)
    return mask.astype(bool)


class ProceduralDepth:
    """A depth source drawing a :func:`procedural_depth` scene for every image (deterministic per ``rng``)."""

    kind = "depth"

    def __init__(self, config: ProceduralDepthConfig | None = None):
        self.config = config or ProceduralDepthConfig()

    def __call__(
        self, name: str, image: np.ndarray, crop: CropResize, rng: np.random.Generator
    ) -> np.ndarray:
        return procedural_depth(image.shape[0], image.shape[1], rng, self.config)
