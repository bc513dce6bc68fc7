"""Settings shared by the robust estimators (essential / fundamental matrix, homography).

Three back ends are selectable by name:

``opencv-ransac``
    OpenCV's classic RANSAC (``cv2.RANSAC``), the estimator of the LoFTR / RoMa evaluation code.
``opencv-magsac``
    OpenCV's USAC framework with MAGSAC++ scoring (``cv2.USAC_MAGSAC``).
``poselib``
    PoseLib's LO-RANSAC with non-linear refinement (``poselib.estimate_relative_pose`` /
    ``estimate_fundamental`` / ``estimate_homography``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from ..defaults import ESTIMATORS
from ..errors import InputShapeError


@dataclass(frozen=True)
class RansacConfig:
    """How a robust estimator is run.

    Attributes:
        method: one of :data:`ESTIMATORS`.
        threshold_px: inlier threshold in pixels: epipolar (point-to-line or Sampson) distance for
            essential / fundamental matrices, reprojection distance for homographies. For the
            essential matrix with OpenCV it is divided by the mean focal length (LoFTR protocol).
        confidence: the RANSAC success probability that stops the sampling early.
        max_iters: upper bound on the number of RANSAC iterations.
        seed: seed of the estimator's random generator, so that results are reproducible.
    """

    method: str = "opencv-ransac"
    threshold_px: float = 0.5
    confidence: float = 0.99999
    max_iters: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.method not in ESTIMATORS:
            raise ValueError(f"unknown estimator '{self.method}'; choose one of {', '.join(ESTIMATORS)}")
        if not self.threshold_px > 0:
            raise ValueError(f"threshold_px must be positive, got {self.threshold_px}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.max_iters < 1:
            raise ValueError(f"max_iters must be at least 1, got {self.max_iters}")

    def replace(self, **changes) -> RansacConfig:
        """A copy with some fields changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def opencv_flag(method: str) -> int:
    """The ``cv2`` method flag of an OpenCV back end."""
    return {"opencv-ransac": cv2.RANSAC, "opencv-magsac": cv2.USAC_MAGSAC}[method]


def poselib_ransac_options(config: RansacConfig, error_key: str) -> dict:
    """PoseLib's ``ransac_opt`` for ``config``; ``error_key`` names the threshold PoseLib should apply
    (``max_epipolar_error`` or ``max_reproj_error``)."""
    return {
        error_key: config.threshold_px,
        "success_prob": config.confidence,
        "max_iterations": config.max_iters,
        "min_iterations": min(100, config.max_iters),
        "seed": config.seed,
    }


def call_opencv(function, kpts0, kpts1, config: RansacConfig, **kwargs):
    """Run a ``cv2.find*`` estimator with the config's method and seed; ``(None, None)`` if OpenCV raises.

    The seed goes to ``cv2.setRNGSeed`` (OpenCV's global generator), so results are reproducible.
    """
    cv2.setRNGSeed(config.seed)
    try:
        return function(kpts0, kpts1, method=opencv_flag(config.method), **kwargs)
    except cv2.error:
        return None, None


def fit_model(kind: str, kpts0: np.ndarray, kpts1: np.ndarray, config: RansacConfig):
    """``(model, inlier mask)`` of a ``"fundamental"`` matrix or ``"homography"`` from PoseLib or
    OpenCV (thresholds in pixels); ``(None, None)`` when OpenCV fails."""
    if config.method == "poselib":
        import poselib

        function, error_key = {
            "fundamental": (poselib.estimate_fundamental, "max_epipolar_error"),
            "homography": (poselib.estimate_homography, "max_reproj_error"),
        }[kind]
        model, info = function(kpts0, kpts1, poselib_ransac_options(config, error_key), {})
        return model, info.get("inliers")
    function = {"fundamental": cv2.findFundamentalMat, "homography": cv2.findHomography}[kind]
    return call_opencv(
        function,
        kpts0,
        kpts1,
        config,
        ransacReprojThreshold=config.threshold_px,
        confidence=config.confidence,
        maxIters=config.max_iters,
    )


def check_points(kpts0, kpts1) -> tuple[np.ndarray, np.ndarray]:
    """Two ``(N, 2)`` float64 arrays of corresponding points; raises :class:`InputShapeError` otherwise."""
    kpts0 = np.asarray(kpts0, dtype=np.float64)
    kpts1 = np.asarray(kpts1, dtype=np.float64)
    if kpts0.ndim != 2 or kpts0.shape[-1] != 2 or kpts0.shape != kpts1.shape:
        raise InputShapeError(
            f"expected two (N, 2) point arrays of equal length, got {kpts0.shape} and {kpts1.shape}"
        )
    finite = np.isfinite(kpts0).all(axis=1) & np.isfinite(kpts1).all(axis=1)
    if not finite.all():
        raise InputShapeError(f"{int((~finite).sum())} correspondence(s) have non-finite coordinates")
    return np.ascontiguousarray(kpts0), np.ascontiguousarray(kpts1)


def inlier_mask(mask, n: int) -> np.ndarray:
    """An OpenCV / PoseLib inlier output as a boolean ``(n,)`` array."""
    if mask is None:
        return np.zeros(n, dtype=bool)
    return np.asarray(mask).reshape(-1).astype(bool)[:n]
