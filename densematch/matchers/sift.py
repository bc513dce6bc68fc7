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
        """Indices ``(M, 2)`` of matched descriptors and a score per match in (0, 1]."""
        if len(desc0) < 2 or len(desc1) < 2:
            return np.zeros((0, 2), np.int64), np.zeros(0)
        matcher = cv2.BFMatcher(cv2.NORM_L2)
        knn = matcher.knnMatch(desc0, desc1, k=2)
        pairs, scores = [], []
        for candidates in knn:
            if len(candidates) < 2:
                continue
            best, second = candidates
            if best.distance < self.ratio * second.distance:
                pairs.append((best.queryIdx, best.trainIdx))
                scores.append(1.0 - best.distance / max(second.distance, 1e-8))
        pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        scores = np.array(scores, dtype=np.float64)
        if self.mutual and len(pairs):
            back = matcher.match(desc1, desc0)
            reverse = {m.queryIdx: m.trainIdx for m in back}
            keep = np.array([reverse.get(j, -1) == i for i, j in pairs])
            pairs, scores = pairs[keep], scores[keep]
        return pairs, scores

    def match_pair(self, image0, image1) -> Matches:
        kpts0, desc0, size0 = self.detect(image0)
        kpts1, desc1, size1 = self.detect(image1)
        pairs, scores = self.match_descriptors(desc0, desc1)
        return Matches(kpts0[pairs[:, 0]], kpts1[pairs[:, 1]], scores, size0, size1)
