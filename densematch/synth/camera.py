"""Cameras of the data engine: image preparation (resize + centre crop), sampled intrinsics and novel poses.

The defaults are the published L2M ranges (``get_data.py``): focal length ``f ~ U(0.45, 0.75)`` times the
image width, principal point at the image centre; the novel camera moves by ``|t_x|, |t_y| in [0.2, 0.4]``,
``|t_z| in [0.4, 0.8]`` (in units of the nearest scene depth) and rotates by an axis-angle vector whose
components have magnitudes in ``[5, 10]`` degrees, every component with a random sign. ``X1 = R X0 + t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputShapeError


@dataclass(frozen=True)
class PoseRanges:
    """Magnitude ranges of the novel-camera motion; every component gets a random sign.

    A component is drawn as ``sign * U(low, high)``; ``(0, 0)`` disables it. Translations are in units of the
    scene scale (the near depth of the scene, see ``SynthConfig.scene_scale_quantile``).
    """

    translation_x: tuple[float, float] = (0.2, 0.4)
    translation_y: tuple[float, float] = (0.2, 0.4)
    translation_z: tuple[float, float] = (0.4, 0.8)
    rotation_deg: tuple[float, float] = (5.0, 10.0)  # each axis-angle component, in degrees

    def __post_init__(self):
        for name in ("translation_x", "translation_y", "translation_z", "rotation_deg"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"PoseRanges.{name} must satisfy 0 <= low <= high, got ({low}, {high})")


def sample_relative_pose(rng: np.random.Generator, ranges: PoseRanges, scale: float = 1.0) -> np.ndarray:
    """A random ``T_0to1`` (4x4 float64): ``X1 = R X0 + t`` with ``t`` scaled by ``scale``."""

    def component(bounds: tuple[float, float]) -> float:
        sign = 1.0 if rng.random() < 0.5 else -1.0
        return sign * rng.uniform(*bounds)

    rotation = np.radians([component(ranges.rotation_deg) for _ in range(3)])
    translation = np.array(
        [component(ranges.translation_x), component(ranges.translation_y), component(ranges.translation_z)]
    )
    T = np.eye(4)
    T[:3, :3] = axis_angle_to_matrix(rotation)
    T[:3, 3] = translation * scale
    return T


def axis_angle_to_matrix(rotation: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: an axis-angle vector (3,) (radians) -> rotation matrix (3, 3)."""
    rotation = np.asarray(rotation, dtype=np.float64)
    angle = float(np.linalg.norm(rotation))
    if angle < 1e-12:
        return np.eye(3)
    x, y, z = rotation / angle
    skew = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * skew + (1 - math.cos(angle)) * skew @ skew


def sample_intrinsics(
    rng: np.random.Generator, width: int, height: int, focal_range: tuple[float, float] = (0.45, 0.75)
) -> np.ndarray:
    """A pinhole ``K`` (3x3 float64): ``f = U(focal_range) * width`` pixels, principal point at the centre."""
    focal = rng.uniform(*focal_range) * width
    return np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class CropResize:
    """Resize an image so that its short side is ``resolution``, then crop the centre ``resolution`` square.

    Pixel ``u`` of the source maps to ``(u + 0.5) * scale_x - 0.5 - left`` (OpenCV centres), likewise ``v``.
    """

    source_size: tuple[int, int]  # (width, height) of the original image
    resized_size: tuple[int, int]  # (width, height) after resizing
    left: int
    top: int
    resolution: int

    @classmethod
    def square(cls, width: int, height: int, resolution: int) -> CropResize:
        """The L2M preprocessing: short side to ``resolution``, then a centred ``resolution`` square."""
        if width < 2 or height < 2:
            raise InputShapeError(f"image of {width}x{height} pixels is too small")
        if resolution < 2:
            raise ValueError(f"resolution must be at least 2, got {resolution}")
        scale = resolution / min(width, height)
        resized = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
        return cls(
            (width, height),
            resized,
            (resized[0] - resolution) // 2,
            (resized[1] - resolution) // 2,
            resolution,
        )

    @property
    def scale(self) -> tuple[float, float]:
        """``(scale_x, scale_y)`` of the resize."""
        return self.resized_size[0] / self.source_size[0], self.resized_size[1] / self.source_size[1]

    def _check(self, array: np.ndarray, what: str) -> None:
        width, height = self.source_size
        if array.shape[:2] != (height, width):
            raise InputShapeError(
                f"{what} is {array.shape[1]}x{array.shape[0]} but the image is {width}x{height}"
            )

    def _crop(self, array: np.ndarray) -> np.ndarray:
        size = self.resolution
        return np.ascontiguousarray(array[self.top : self.top + size, self.left : self.left + size])

    def _interpolation(self) -> int:
        return cv2.INTER_AREA if self.resized_size[0] < self.source_size[0] else cv2.INTER_LINEAR

    def image(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, C)`` uint8 image -> ``(R, R, C)``."""
        self._check(image, "the image")
        return self._crop(cv2.resize(image, self.resized_size, interpolation=self._interpolation()))

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """``(H, W)`` bool mask -> ``(R, R)`` bool (nearest neighbour)."""
        self._check(mask, "the mask")
        resized = cv2.resize(mask.astype(np.uint8), self.resized_size, interpolation=cv2.INTER_NEAREST)
        return self._crop(resized).astype(bool)

    def values(self, values: np.ndarray, what: str = "the depth map") -> np.ndarray:
        """``(H, W)`` map with unknown entries (0 or non-finite) -> ``(R, R)`` float32, 0 = unknown.

        Known values are averaged (area or bilinear weights); an output pixel is known only when every
        source pixel it draws from is known, so unknown regions never bleed into known ones.
        """
        self._check(values, what)
        values = values.astype(np.float32, copy=False)
        known = (np.isfinite(values) & (values > 0)).astype(np.float32)
        filled = np.where(known > 0, values, 0).astype(np.float32)
        interpolation = self._interpolation()
        total = cv2.resize(filled, self.resized_size, interpolation=interpolation)
        weight = cv2.resize(known, self.resized_size, interpolation=interpolation)
        out = np.where(weight > 1 - 1e-4, total / np.maximum(weight, 1e-6), 0).astype(np.float32)
        return self._crop(out)

    def intrinsics(self, K: np.ndarray) -> np.ndarray:
        """The intrinsics of the prepared image given those of the original."""
        sx, sy = self.scale
        K = np.asarray(K, dtype=np.float64)
        out = K.copy()
        out[0] = K[0] * sx
        out[1] = K[1] * sy
        out[0, 2] = (K[0, 2] + 0.5) * sx - 0.5 - self.left
        out[1, 2] = (K[1, 2] + 0.5) * sy - 0.5 - self.top
        return out
