"""The classical baseline: OpenCV SIFT with Lowe's ratio test (and an optional mutual check)."""

from __future__ import annotations

import cv2
import numpy as np

from ..defaults import SIFT_NUM_KEYPOINTS
from ..io import load_image
from .base import Matches, PairMatcher


class SiftMatcher(PairMatcher):
    """OpenCV SIFT + brute-force L2 matching with the ratio test, on greyscale images at full size.

    Args:
        max_keypoints: cap on detected keypoints per image (OpenCV's ``nfeatures``; 0 = no cap).
        ratio: Lowe's ratio threshold (first / second nearest neighbour distance).
        root_sift: use RootSIFT descriptors (L1-normalise, square root).
        mutual: keep only mutual nearest neighbours in addition to the ratio test.
        contrast_threshold: OpenCV's ``contrastThreshold`` (default 0.04); a very low value (e.g.
            -10000, as in the WxBS benchmark's SIFT example) keeps the ``max_keypoints`` strongest
            detections however weak.
        edge_threshold: OpenCV's ``edgeThreshold`` (default 10); large values keep edge-like blobs.
    """

    name = "sift"

    def __init__(
        self,
        max_keypoints: int = SIFT_NUM_KEYPOINTS,
        ratio: float = 0.8,
        root_sift: bool = False,
        mutual: bool = False,
        contrast_threshold: float = 0.04,
        edge_threshold: float = 10.0,
    ):
        self.max_keypoints = int(max_keypoints)
        self.ratio = float(ratio)
        self.root_sift = bool(root_sift)
        self.mutual = bool(mutual)
        self.contrast_threshold = float(contrast_threshold)
        self.edge_threshold = float(edge_threshold)

    def detect(self, image) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """Keypoints ``(N, 2)`` in OpenCV pixels, descriptors ``(N, 128)`` float32 and ``(width, height)``."""
        points, _, descriptors, size = self.detect_scored(image)
        return points, descriptors, size

    def detect_scored(self, image) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
        """Like :meth:`detect`, plus the detector response ``(N,)`` of each keypoint (second item)."""
        grey = np.asarray(load_image(image, mode="L"))
        sift = cv2.SIFT_create(
            nfeatures=self.max_keypoints,
            contrastThreshold=self.contrast_threshold,
            edgeThreshold=self.edge_threshold,
        )
        keypoints, descriptors = sift.detectAndCompute(grey, None)
        points = np.array([kp.pt for kp in keypoints], dtype=np.float64).reshape(-1, 2)
        responses = np.array([kp.response for kp in keypoints], dtype=np.float64)
        if descriptors is None:
            descriptors = np.zeros((0, 128), np.float32)
        if self.root_sift and len(descriptors):
            descriptors = descriptors / (np.abs(descriptors).sum(axis=1, keepdims=True) + 1e-8)
            descriptors = np.sqrt(descriptors).astype(np.float32)
        return points, responses, descriptors, (grey.shape[1], grey.shape[0])

    def match_descriptors(self, desc0: np.ndarray, desc1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(M, 2)`` of matched descriptors and a score per match in (0, 1].

        The same matches as OpenCV's ``BFMatcher(NORM_L2).knnMatch(k=2)`` + ratio test (and
        ``match()`` the other way for the mutual check), from one matrix product per pair, in
        blocks of rows (see :func:`_nearest_neighbours`): ``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b``; the
        two nearest per row and the nearest per column (mutual check) come from the same product. For
        OpenCV SIFT descriptors (whole numbers, squared distances < 2^24) every step is exact in float32, so matches and
        scores equal OpenCV's bit for bit; for RootSIFT they agree up to float32 rounding (a ratio
        within ~1e-6 of the threshold may resolve differently).
        """
        if len(desc0) < 2 or len(desc1) < 2:
            return np.zeros((0, 2), np.int64), np.zeros(0)
        best, first, second, back = _nearest_neighbours(desc0, desc1, backward=self.mutual)
        keep = np.flatnonzero(first < self.ratio * second)
        pairs = np.stack((keep, best[keep]), axis=1).astype(np.int64)
        scores = 1.0 - first[keep].astype(np.float64) / np.maximum(second[keep].astype(np.float64), 1e-8)
        if self.mutual and len(pairs):
            mutual = back[pairs[:, 1]] == pairs[:, 0]
            pairs, scores = pairs[mutual], scores[mutual]
        return pairs, scores

    def match_pair(self, image0, image1) -> Matches:
        kpts0, desc0, size0 = self.detect(image0)
        kpts1, desc1, size1 = self.detect(image1)
        pairs, scores = self.match_descriptors(desc0, desc1)
        return Matches(kpts0[pairs[:, 0]], kpts1[pairs[:, 1]], scores, size0, size1)



def _nearest_neighbours(desc0: np.ndarray, desc1: np.ndarray, block: int = 256, backward: bool = True):
    """Brute-force L2 neighbours of ``desc0 (N, D)`` among ``desc1 (M, D)`` (NumPy matrix products).

    Returns ``best (N,)`` (nearest in desc1), ``first, second (N,)`` (L2 distance to the nearest and
    second nearest, float32) and ``back (M,)`` (nearest in desc0 of each desc1 row; only when
    ``backward``, else None). Ties go to the lower index, as in OpenCV's brute-force matcher.

    Rows go in blocks of ``block``: a ``block x M`` distance block stays in cache for the reductions that
    follow its product (256 rows: 1.8x faster than blocks of 2048, 3x with the mutual check, measured on one
    thread). NumPy rather than torch: as fast or faster here (measured 0.40 vs 0.55 s per 8192 x 8192 pair
    on one thread), its ``sqrt`` gives OpenCV's distances bit for bit, and SIFT matching never imports torch
    (~1.5-1.9 s of start-up).
    """
    a = np.ascontiguousarray(desc0, dtype=np.float32)
    b = np.ascontiguousarray(desc1, dtype=np.float32)
    norm_a, norm_b = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    b_t = np.ascontiguousarray(b.T)
    n, m = len(a), len(b)
    best = np.empty(n, np.int64)
    first, second = np.empty(n, np.float32), np.empty(n, np.float32)
    back_d2, back = np.full(m, np.inf, np.float32), np.zeros(m, np.int64)
    columns = np.arange(m)
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = np.arange(stop - start)
        # |b|^2 - 2 a.b ranks the columns of a row as |a - b|^2 does (|a|^2 is added to the two kept)
        d2 = a[start:stop] @ b_t
        d2 *= -2
        d2 += norm_b[None]
        if backward:  # the other way round, rows rank by |a|^2 - 2 a.b
            column = d2 - norm_b[None]
            column += norm_a[start:stop, None]
            column_idx = column.argmin(0)  # lowest row on ties
            column_d2 = column[column_idx, columns]
            better = column_d2 < back_d2  # strict: an earlier block keeps a tie
            back_d2 = np.where(better, column_d2, back_d2)
            back = np.where(better, column_idx + start, back)
        idx = d2.argmin(1)
        best[start:stop], first[start:stop] = idx, d2[rows, idx] + norm_a[start:stop]
        d2[rows, idx] = np.inf
        second[start:stop] = d2.min(1) + norm_a[start:stop]
    np.maximum(first, 0, out=first)
    np.maximum(second, 0, out=second)
    return best, np.sqrt(first), np.sqrt(second), back if backward else None
