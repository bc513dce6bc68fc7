"""Key-area direction: which image is the query (upstream ``forward_test``, ``allow_reverse=True``).

A fundamental-matrix RANSAC (OpenCV, threshold 3 coarse cells, confidence 0.9999, at most 10
iterations) runs on the mutual-nearest coarse matches. On its inliers the mean squared pairwise distance
is computed in each image; when image 0's inliers are *less* spread than image 1's, the roles swap, so that
the image whose common area is larger (finer scale) becomes the query.

Reproducibility: ``cv2.findFundamentalMat(..., cv2.RANSAC)`` draws its samples from a generator created
with a fixed seed inside each call (``RNG((uint64)-1)`` in ``ptsetreg.cpp``), so the decision is a pure
function of the matches in OpenCV 4.x and 5.x; ``cv2.setRNGSeed`` (called here anyway, with a fixed
value, for builds that would draw from the global generator) does not change it. ``tests/test_imamatch_direction.py``
checks both, and the agreement with the reference's decision.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

RANSAC_THRESHOLD = 3.0  # coarse cells
RANSAC_CONFIDENCE = 0.9999
RANSAC_ITERATIONS = 10
_CV_SEED = 0  # cv::RNG(0) is OpenCV's start state (0xffffffff)


def key_area_inliers(coords0: torch.Tensor, coords1: torch.Tensor) -> torch.Tensor | None:
    """F-RANSAC inlier mask ``(N,)`` bool of coarse matches ``coords0, coords1 (N, 2)`` (cells, x y), or
    None when RANSAC finds no model (fewer than 7 matches, degenerate input) or no inlier."""
    if coords0.shape[0] < 7:
        return None
    cv2.setRNGSeed(_CV_SEED)
    try:
        _, inliers = cv2.findFundamentalMat(
            coords0.detach().cpu().numpy().astype(np.float32), coords1.detach().cpu().numpy().astype(np.float32),
            method=cv2.RANSAC, ransacReprojThreshold=RANSAC_THRESHOLD, confidence=RANSAC_CONFIDENCE,
            maxIters=RANSAC_ITERATIONS,
        )
    except cv2.error:
        return None
    if inliers is None or inliers.shape[0] != coords0.shape[0]:  # several models (7-point): upstream fails too
        return None
    inliers = torch.from_numpy(inliers.reshape(-1) > 0).to(coords0.device)
    return inliers if bool(inliers.any()) else None


def mean_squared_spread(points: torch.Tensor) -> torch.Tensor:
    """Mean over all ordered pairs (self pairs included) of the squared distance, as upstream, in the
    closed form ``2 (mean |p|^2 - |mean p|^2)`` in float64 (upstream builds the ``N x N`` matrix in
    float32: 1.6 GB for 20k matches; the two agree except at ties within float32 rounding)."""
    p = points.double()
    return 2 * (p.pow(2).sum(-1).mean() - p.mean(0).pow(2).sum())


def decide_reverse(coords0: torch.Tensor, coords1: torch.Tensor) -> bool | None:
    """True when image 1 should be the query, False when image 0, None when RANSAC fails (upstream then
    returns no matches)."""
    inliers = key_area_inliers(coords0, coords1)
    return None if inliers is None else reverse_from_inliers(coords0[inliers], coords1[inliers])


def reverse_from_inliers(inliers0: torch.Tensor, inliers1: torch.Tensor) -> bool:
    """True when the inliers of image 0 ``(M, 2)`` are less spread than those of image 1."""
    return bool(mean_squared_spread(inliers0) < mean_squared_spread(inliers1))
