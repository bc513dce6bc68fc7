"""Relative pose from correspondences and intrinsics, and the standard pose errors.

The estimate follows the protocol of the LoFTR / RoMa evaluation code: points are normalised with
``K``, an essential matrix is fitted robustly with a threshold of ``threshold_px / mean focal
length``, every candidate ``E`` returned by the solver goes through ``cv2.recoverPose`` (the
cheirality check) and the candidate with the most points in front of both cameras wins. PoseLib
(``estimate_relative_pose`` with PINHOLE cameras) is the alternative back end.

Conventions (:mod:`densematch.conventions`): pixels are OpenCV pixels; the returned ``R, t`` map
camera-0 points into camera 1 (``X1 = R @ X0 + t``), the same convention as ``T_0to1``, and ``t``
has unit length (two views do not observe scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputShapeError
from .camera import as_intrinsics, mean_focal, normalize_points
from .robust import RansacConfig, call_opencv, check_points, inlier_mask, poselib_ransac_options

MIN_MATCHES = 5  # the minimal sample of the five-point solver


@dataclass
class RelativePose:
    """A relative pose estimate.

    Attributes:
        R: ``(3, 3)`` rotation, camera 0 -> camera 1.
        t: ``(3,)`` unit translation direction, camera 0 -> camera 1.
        inliers: ``(N,)`` bool, the correspondences consistent with the estimate.
    """

    R: np.ndarray
    t: np.ndarray
    inliers: np.ndarray

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())

    @property
    def T_0to1(self) -> np.ndarray:
        """The estimate as a ``(4, 4)`` transform (with unit-length translation)."""
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = self.R, self.t
        return T


def estimate_relative_pose(kpts0, kpts1, K0, K1, config: RansacConfig | None = None) -> RelativePose | None:
    """Estimate ``R, t`` (camera 0 -> camera 1) from pixel correspondences.

    Args:
        kpts0, kpts1: ``(N, 2)`` OpenCV pixel coordinates in image 0 and image 1.
        K0, K1: ``(3, 3)`` intrinsics of the two images at the resolution of the points.
        config: estimator and thresholds (default: OpenCV RANSAC, 0.5 px, as LoFTR / RoMa).

    Returns:
        The estimate, or ``None`` when there are fewer than 5 correspondences or the solver finds no
        model.
    """
    config = config or RansacConfig()
    kpts0, kpts1 = check_points(kpts0, kpts1)
    K0, K1 = as_intrinsics(K0), as_intrinsics(K1)
    if len(kpts0) < MIN_MATCHES:
        return None
    if config.method == "poselib":
        return _poselib_relative_pose(kpts0, kpts1, K0, K1, config)
    return _opencv_relative_pose(kpts0, kpts1, K0, K1, config)


def _opencv_relative_pose(kpts0, kpts1, K0, K1, config: RansacConfig) -> RelativePose | None:
    pts0, pts1 = normalize_points(kpts0, K0), normalize_points(kpts1, K1)
    threshold = config.threshold_px / mean_focal(K0, K1)
    E, mask = call_opencv(
        cv2.findEssentialMat,
        pts0,
        pts1,
        config,
        cameraMatrix=np.eye(3),
        prob=config.confidence,
        threshold=threshold,
        maxIters=config.max_iters,
    )
    if E is None or E.size == 0 or mask is None:
        return None
    ransac_inliers = inlier_mask(mask, len(pts0))
    best = None
    for candidate in np.split(E.reshape(-1, 3), len(E.reshape(-1, 3)) // 3):
        candidate_mask = ransac_inliers.astype(np.uint8).reshape(-1, 1).copy()  # recoverPose writes into it
        count, R, t, out_mask = cv2.recoverPose(candidate, pts0, pts1, np.eye(3), 1e9, mask=candidate_mask)
        if best is None or count > best[0]:
            best = (count, R, t.reshape(3), inlier_mask(out_mask, len(pts0)))
    if best is None or best[0] == 0:
        return None
    _, R, t, inliers = best
    return RelativePose(R=R, t=t / np.linalg.norm(t), inliers=inliers)


def _poselib_relative_pose(kpts0, kpts1, K0, K1, config: RansacConfig) -> RelativePose | None:
    import poselib

    def camera(K):
        return {"model": "PINHOLE", "width": 0, "height": 0, "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]}

    if abs(K0[0, 1]) > 1e-9 or abs(K1[0, 1]) > 1e-9:
        raise InputShapeError("the poselib estimator needs intrinsics without skew (K[0, 1] == 0)")
    ransac = poselib_ransac_options(config, "max_epipolar_error")
    pose, info = poselib.estimate_relative_pose(kpts0, kpts1, camera(K0), camera(K1), ransac, {})
    inliers = inlier_mask(info.get("inliers"), len(kpts0))
    if not inliers.any():
        return None
    R, t = np.asarray(pose.R), np.asarray(pose.t).reshape(3)
    norm = np.linalg.norm(t)
    if not np.isfinite(R).all() or not norm > 0:
        return None
    return RelativePose(R=R, t=t / norm, inliers=inliers)


def rotation_error_deg(R_est, R_gt) -> float:
    """Angle of the rotation ``R_est^T R_gt`` in degrees (0..180)."""
    cos = (np.trace(np.asarray(R_est).T @ np.asarray(R_gt)) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def angle_between_deg(v0, v1) -> float:
    """Angle between two 3-vectors in degrees (0..180); 90 when either is zero."""
    v0, v1 = np.asarray(v0, dtype=np.float64).reshape(3), np.asarray(v1, dtype=np.float64).reshape(3)
    norm = np.linalg.norm(v0) * np.linalg.norm(v1)
    if norm == 0:
        return 90.0
    return float(np.degrees(np.arccos(np.clip(v0 @ v1 / norm, -1.0, 1.0))))


def translation_error_deg(t_est, t_gt) -> float:
    """Angle between translation directions, up to sign (``min(e, 180 - e)``): E fixes t only up to sign."""
    error = angle_between_deg(t_est, t_gt)
    return min(error, 180.0 - error)


def relative_pose_error(R_est, t_est, T_0to1) -> tuple[float, float]:
    """``(rotation error, translation direction error)`` in degrees of an estimate against ``T_0to1``.

    A ground-truth translation of zero length (pure rotation) has no direction; its error is 0.
    """
    T_0to1 = np.asarray(T_0to1, dtype=np.float64)
    if T_0to1.shape not in ((4, 4), (3, 4)):
        raise InputShapeError(f"T_0to1 must be 4x4 or 3x4, got {T_0to1.shape}")
    err_R = rotation_error_deg(R_est, T_0to1[:3, :3])
    t_gt = T_0to1[:3, 3]
    err_t = 0.0 if np.linalg.norm(t_gt) < 1e-12 else translation_error_deg(t_est, t_gt)
    return err_R, err_t
