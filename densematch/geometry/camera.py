"""Pinhole camera helpers: normalising pixels with ``K`` and changing image resolution.

Pixels follow :mod:`densematch.conventions` (OpenCV: the centre of the top-left pixel is ``(0, 0)``).
Resizing an image by a factor ``s`` maps a pixel ``u`` to ``(u + 0.5) * s - 0.5``.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputShapeError


def as_intrinsics(K) -> np.ndarray:
    """A ``(3, 3)`` float64 pinhole matrix; raises :class:`InputShapeError` for anything else."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape == (4, 4):  # ScanNet's intrinsic_*.txt files hold K padded to 4x4
        K = K[:3, :3]
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputShapeError(
            f"expected a 3x3 intrinsics matrix with positive focal lengths, got {K.tolist()}"
        )
    return K


def normalize_points(uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels ``(N, 2)`` -> normalised image coordinates ``(N, 2)``: ``inv(K) @ [u, v, 1]``."""
    K = as_intrinsics(K)
    homogeneous = np.concatenate([uv, np.ones_like(uv[:, :1])], axis=1)
    rays = homogeneous @ np.linalg.inv(K).T
    return rays[:, :2] / rays[:, 2:]


def mean_focal(*Ks) -> float:
    """Mean of ``fx`` and ``fy`` over the given intrinsics."""
    return float(np.mean([[as_intrinsics(K)[0, 0], as_intrinsics(K)[1, 1]] for K in Ks]))


def rescale_pixels(uv: np.ndarray, scale: float) -> np.ndarray:
    """Pixel coordinates ``(..., 2)`` in an image resized by ``scale``."""
    return (np.asarray(uv, dtype=np.float64) + 0.5) * scale - 0.5


def rescale_intrinsics(K, scale: float | tuple[float, float]) -> np.ndarray:
    """Intrinsics of an image resized by ``scale`` (or per axis by ``(sx, sy)``), consistent with
    :func:`rescale_pixels`: in OpenCV pixels ``u' = s (u + 0.5) - 0.5``."""
    sx, sy = (scale, scale) if np.isscalar(scale) else scale
    S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    return S @ as_intrinsics(K)
