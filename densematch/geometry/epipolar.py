"""Epipolar geometry: E and F from a pose, robust F estimation, epipolar distances.

Conventions: ``x1^T F x0 = 0`` for OpenCV pixels ``x0`` in image 0 and ``x1`` in image 1, and
``F = inv(K1)^T E inv(K0)`` with ``E = [t]_x R`` for ``T_0to1 = [R | t]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputShapeError
from .camera import as_intrinsics, normalize_points
from .robust import RansacConfig, check_points, fit_model, inlier_mask

MIN_MATCHES_F = 8  # OpenCV's RANSAC for F needs 8 points (7-point sampling, 8-point refit)


def skew(v) -> np.ndarray:
    """The cross-product matrix ``[v]_x`` of a 3-vector: ``skew(a) @ b == cross(a, b)``."""
    x, y, z = np.asarray(v, dtype=np.float64).reshape(3)
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def essential_from_pose(T_0to1) -> np.ndarray:
    """``E = [t]_x R`` of a ``(4, 4)`` or ``(3, 4)`` camera-0 -> camera-1 transform."""
    T_0to1 = np.asarray(T_0to1, dtype=np.float64)
    return skew(T_0to1[:3, 3]) @ T_0to1[:3, :3]


def fundamental_from_pose(K0, K1, T_0to1) -> np.ndarray:
    """``F = inv(K1)^T [t]_x R inv(K0)``, normalised to unit Frobenius norm."""
    F = np.linalg.inv(as_intrinsics(K1)).T @ essential_from_pose(T_0to1) @ np.linalg.inv(as_intrinsics(K0))
    return F / np.linalg.norm(F)


def _as_fundamental(F) -> np.ndarray:
    F = np.asarray(F, dtype=np.float64)
    if F.shape != (3, 3):
        raise InputShapeError(f"a fundamental matrix must be 3x3, got {F.shape}")
    return F


def _epilines(kpts0, kpts1, F):
    x0 = np.concatenate([kpts0, np.ones_like(kpts0[:, :1])], axis=1)
    x1 = np.concatenate([kpts1, np.ones_like(kpts1[:, :1])], axis=1)
    line_in_1 = x0 @ F.T  # F x0: epipolar lines of image-0 points in image 1
    line_in_0 = x1 @ F  # F^T x1: epipolar lines of image-1 points in image 0
    algebraic = np.sum(x1 * line_in_1, axis=1)
    return algebraic, line_in_0, line_in_1


def symmetric_epipolar_distance(kpts0, kpts1, F) -> np.ndarray:
    """Per correspondence ``sqrt(d(x1, F x0)^2 + d(x0, F^T x1)^2)`` in pixels, shape ``(N,)``.

    ``d`` is the point-to-line distance. This is the (non-squared) symmetrical epipolar distance of
    Hartley & Zisserman and of ``kornia.geometry.epipolar.symmetrical_epipolar_distance``, which the
    WxBS benchmark uses. A degenerate line (zero normal) gives an infinite distance.
    """
    kpts0, kpts1 = check_points(kpts0, kpts1)
    algebraic, line_in_0, line_in_1 = _epilines(kpts0, kpts1, _as_fundamental(F))
    with np.errstate(divide="ignore", invalid="ignore"):
        inv0 = 1.0 / np.sum(line_in_0[:, :2] ** 2, axis=1)
        inv1 = 1.0 / np.sum(line_in_1[:, :2] ** 2, axis=1)
        distance = np.sqrt(algebraic**2 * (inv0 + inv1))
    return np.where(np.isfinite(distance), distance, np.inf)


def epipolar_precision(kpts0, kpts1, K0, K1, T_0to1, threshold: float = 5e-4) -> float:
    """LoFTR's matching precision: the fraction of matches whose *squared* symmetric epipolar distance in
    normalised camera coordinates under the ground-truth essential matrix is below ``threshold`` (LoFTR's
    ``compute_symmetrical_epipolar_errors`` / ``compute_precision``, 5e-4 in LoFTR, S2LD, IMAMatch); 0 when
    there are no matches."""
    kpts0, kpts1 = check_points(kpts0, kpts1)
    if len(kpts0) == 0:
        return 0.0
    errors = symmetric_epipolar_distance(
        normalize_points(kpts0, K0), normalize_points(kpts1, K1), essential_from_pose(T_0to1)
    )
    return float(np.mean(errors**2 < threshold))


def sampson_distance(kpts0, kpts1, F) -> np.ndarray:
    """Per correspondence Sampson distance in pixels (first-order geometric error), shape ``(N,)``."""
    kpts0, kpts1 = check_points(kpts0, kpts1)
    algebraic, line_in_0, line_in_1 = _epilines(kpts0, kpts1, _as_fundamental(F))
    denominator = np.sum(line_in_0[:, :2] ** 2, axis=1) + np.sum(line_in_1[:, :2] ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.abs(algebraic) / np.sqrt(denominator)
    return np.where(np.isfinite(distance), distance, np.inf)


@dataclass
class FundamentalEstimate:
    """``F`` (unit Frobenius norm, ``x1^T F x0 = 0``) and the ``(N,)`` bool inlier mask."""

    F: np.ndarray
    inliers: np.ndarray

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


def estimate_fundamental(kpts0, kpts1, config: RansacConfig | None = None) -> FundamentalEstimate | None:
    """Robustly fit a fundamental matrix to pixel correspondences ``(N, 2)``, ``(N, 2)``.

    Returns ``None`` with fewer than 8 correspondences or when no model is found. The default
    configuration is the one of the WxBS benchmark's SIFT example: MAGSAC++, 0.25 px, confidence
    0.999, 100000 iterations.
    """
    config = config or RansacConfig(
        method="opencv-magsac", threshold_px=0.25, confidence=0.999, max_iters=100000
    )
    kpts0, kpts1 = check_points(kpts0, kpts1)
    if len(kpts0) < MIN_MATCHES_F:
        return None
    F, mask = fit_model("fundamental", kpts0, kpts1, config)
    if F is None or np.asarray(F).size < 9:
        return None
    F = np.asarray(F, dtype=np.float64)[:3, :3]  # OpenCV may stack several 7-point solutions
    norm = np.linalg.norm(F)
    if not np.isfinite(F).all() or norm == 0:
        return None
    inliers = inlier_mask(mask, len(kpts0))
    if not inliers.any():
        return None
    return FundamentalEstimate(F=F / norm, inliers=inliers)
