"""Homographies: robust estimation, applying ``H`` to points, the corner error, plane-induced ``H``.

``H_0to1`` maps OpenCV pixels of image 0 to OpenCV pixels of image 1:
``[u1, v1, 1]^T ~ H_0to1 @ [u0, v0, 1]^T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputShapeError
from .camera import as_intrinsics
from .robust import RansacConfig, check_points, fit_model, inlier_mask

MIN_MATCHES_H = 4


def _as_homography(H) -> np.ndarray:
    H = np.asarray(H, dtype=np.float64)
    if H.shape != (3, 3):
        raise InputShapeError(f"a homography must be 3x3, got {H.shape}")
    return H


def apply_homography(H, uv) -> np.ndarray:
    """Map points ``(..., 2)`` with ``H``; points sent to infinity become ``inf``."""
    H = _as_homography(H)
    uv = np.asarray(uv, dtype=np.float64)
    homogeneous = np.concatenate([uv, np.ones_like(uv[..., :1])], axis=-1) @ H.T
    with np.errstate(divide="ignore", invalid="ignore"):
        out = homogeneous[..., :2] / homogeneous[..., 2:]
    return np.where(np.isfinite(out), out, np.inf)


def image_corners(width: int, height: int) -> np.ndarray:
    """The centres of the four corner pixels ``(4, 2)``: ``(0, 0), (W-1, 0), (W-1, H-1), (0, H-1)``.

    These are the corners of the HPatches protocol of DKM / RoMa (``[0, 0], [w - 1, 0], ...``).
    """
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float64)


def homography_corner_error(H_est, H_gt, size0: tuple[int, int]) -> float:
    """Mean distance in image-1 pixels between the image-0 corners mapped by ``H_est`` and by ``H_gt``.

    Args:
        size0: ``(width, height)`` of image 0.
    """
    corners = image_corners(*size0)
    error = np.linalg.norm(apply_homography(H_est, corners) - apply_homography(H_gt, corners), axis=1)
    return float(np.mean(error)) if np.isfinite(error).all() else float("inf")


def homography_from_plane(K0, K1, T_0to1, normal, distance: float) -> np.ndarray:
    """The homography induced by the plane ``normal . X0 = distance`` (camera-0 frame).

    Points on the plane satisfy ``X1 = (R + t n^T / d) X0``, so ``H = K1 (R + t n^T / d) inv(K0)``;
    normalised so that ``H[2, 2] == 1``.
    """
    T_0to1 = np.asarray(T_0to1, dtype=np.float64)
    n = np.asarray(normal, dtype=np.float64).reshape(3)
    H = (
        as_intrinsics(K1)
        @ (T_0to1[:3, :3] + np.outer(T_0to1[:3, 3], n) / distance)
        @ np.linalg.inv(as_intrinsics(K0))
    )
    return H / H[2, 2]


@dataclass
class HomographyEstimate:
    """``H_0to1`` (``H[2, 2] == 1``) and the ``(N,)`` bool inlier mask."""

    H: np.ndarray
    inliers: np.ndarray

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


def estimate_homography(kpts0, kpts1, config: RansacConfig | None = None) -> HomographyEstimate | None:
    """Robustly fit ``H_0to1`` to pixel correspondences; ``None`` with fewer than 4 or no model.

    The default configuration is the one of the DKM / RoMa HPatches benchmark: OpenCV RANSAC with a
    3 px reprojection threshold and confidence 0.99999.
    """
    config = config or RansacConfig(threshold_px=3.0, max_iters=2000)
    kpts0, kpts1 = check_points(kpts0, kpts1)
    if len(kpts0) < MIN_MATCHES_H:
        return None
    H, mask = fit_model("homography", kpts0, kpts1, config)
    if H is None:
        return None
    H = np.asarray(H, dtype=np.float64)
    if H.shape != (3, 3) or not np.isfinite(H).all() or abs(H[2, 2]) < 1e-12:
        return None
    inliers = inlier_mask(mask, len(kpts0))
    if not inliers.any():
        return None
    return HomographyEstimate(H=H / H[2, 2], inliers=inliers)
