"""SiftMatcher.match_descriptors (one matrix product) gives OpenCV BFMatcher's matches exactly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from densematch.matchers.sift import SiftMatcher


def opencv_matches(desc0, desc1, ratio, mutual):
    bf = cv2.BFMatcher(cv2.NORM_L2)
    good = [(m.queryIdx, m.trainIdx, 1 - m.distance / max(n.distance, 1e-8))
            for m, n in bf.knnMatch(desc0, desc1, k=2) if m.distance < ratio * n.distance]
    if mutual:
        back = {m.queryIdx: m.trainIdx for m in bf.match(desc1, desc0)}
        good = [g for g in good if back[g[1]] == g[0]]
    return np.array([g[:2] for g in good], np.int64).reshape(-1, 2), np.array([g[2] for g in good])


@pytest.mark.parametrize("mutual", [False, True])
def test_integer_descriptors_match_opencv_bit_for_bit(mutual):
    # SIFT-like whole-number descriptors with near-duplicates (so ratios and ties are exercised),
    # more rows than one block of the product
    rng = np.random.default_rng(0)
    base = rng.integers(0, 120, (2600, 128)).astype(np.float32)
    desc0 = base[:2500]
    desc1 = np.concatenate((base[100:] + rng.integers(-3, 4, (2500, 128)), base[:300])).clip(0).astype(np.float32)
    desc1[5] = desc1[6]  # an exact tie: the lower index wins, as in OpenCV
    pairs, scores = SiftMatcher(ratio=0.8, mutual=mutual).match_descriptors(desc0, desc1)
    ref_pairs, ref_scores = opencv_matches(desc0, desc1, 0.8, mutual)
    assert len(ref_pairs) > 100
    np.testing.assert_array_equal(pairs, ref_pairs)
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=1e-6)


def test_real_sift_and_rootsift_match_opencv():
    rng = np.random.default_rng(1)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (240, 320)).astype(np.uint8), (0, 0), 2)
    shifted = np.roll(texture, (7, 11), axis=(0, 1))
    for root in (False, True):
        sift = SiftMatcher(max_keypoints=1500, root_sift=root, mutual=True)
        desc0, desc1 = sift.detect(texture)[1], sift.detect(shifted)[1]
        pairs, _ = sift.match_descriptors(desc0, desc1)
        ref_pairs, _ = opencv_matches(desc0, desc1, 0.8, True)
        assert len(ref_pairs) > 50
        np.testing.assert_array_equal(pairs, ref_pairs)


def test_too_few_descriptors():
    pairs, scores = SiftMatcher().match_descriptors(np.zeros((1, 128), np.float32), np.zeros((5, 128), np.float32))
    assert pairs.shape == (0, 2) and scores.shape == (0,)
