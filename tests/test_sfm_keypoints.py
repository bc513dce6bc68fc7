"""Snapping dense matches to shared per-image keypoints (densematch.sfm.keypoints)."""

from __future__ import annotations

import numpy as np
import pytest
from sfm_synthetic import apply_h, homography

from densematch.errors import DensematchError
from densematch.matchers.base import Matches
from densematch.sfm.keypoints import DenseKeypointAggregator, GridConfig, one_to_one


def test_grid_config_rejects_inconsistent_values():
    with pytest.raises(DensematchError, match="max_error"):
        GridConfig(cell_size=4, max_error=5)
    with pytest.raises(DensematchError, match="cell_size"):
        GridConfig(cell_size=0)
    with pytest.raises(DensematchError, match="max_keypoints"):
        GridConfig(max_keypoints=0)


def test_one_to_one_keeps_the_best_match_of_each_keypoint():
    pairs = np.array([[0, 0], [0, 1], [1, 1], [2, 2], [3, 2]])
    scores = np.array([0.5, 0.9, 0.8, 0.3, 0.3])
    # (0,1) beats (0,0) for kp0=0 and beats (1,1) for kp1=1; kp1=2 tie -> earlier (2,2) wins
    assert one_to_one(pairs, scores).tolist() == [1, 3]
    assert one_to_one(np.zeros((0, 2), int), np.zeros(0)).tolist() == []


def test_single_pair_on_cell_centres_is_reproduced_exactly():
    # one point per 8-px cell, at the same place in both images: keypoints = the points, matches = identity
    cols, rows = np.meshgrid(np.arange(10), np.arange(6))
    uv = np.stack([cols.ravel() * 8 + 3.25, rows.ravel() * 8 + 2.75], axis=1)
    scores = np.linspace(0.5, 1.0, len(uv))
    matches = Matches(uv, uv + [1.0, 0.0], scores, (80, 48), (81, 48))
    aggregator = DenseKeypointAggregator(GridConfig(cell_size=8, max_error=2, max_keypoints=None))
    aggregator.add("a", "b", matches)
    features = aggregator.features()
    assert features["a"].image_size == (80, 48)
    np.testing.assert_allclose(features["a"].keypoints, uv, atol=1e-5)  # raster order = input order here
    np.testing.assert_allclose(features["b"].keypoints, uv + [1, 0], atol=1e-5)
    result = aggregator.assign("a", "b", matches)
    assert result.matches0.tolist() == list(range(len(uv)))
    np.testing.assert_allclose(result.scores0, scores, rtol=1e-6)


def test_keypoint_is_the_weighted_mean_of_the_winning_bin():
    # three points in one cell: two close together (winning 2-px bin), one alone with a smaller score
    uv0 = np.array([[1.0, 1.0], [1.4, 1.2], [6.0, 6.0]])
    matches = Matches(uv0, uv0, np.array([0.5, 0.25, 0.6]), (8, 8), (8, 8))
    aggregator = DenseKeypointAggregator(GridConfig(cell_size=8, max_error=2))
    aggregator.add("a", "b", matches)
    keypoints = aggregator.features()["a"]
    expected = (0.5 * uv0[0] + 0.25 * uv0[1]) / 0.75
    np.testing.assert_allclose(keypoints.keypoints, [expected], atol=1e-6)
    np.testing.assert_allclose(keypoints.scores, [0.75])
    # the far point (6, 6) is > max_error from the keypoint: its match is dropped; of the two others the
    # higher-scoring one survives (they share the keypoint)
    result = aggregator.assign("a", "b", matches)
    assert result.matches0.tolist() == [0]
    np.testing.assert_allclose(result.scores0, [0.5])


def test_points_outside_the_image_and_non_finite_values_are_ignored():
    uv0 = np.array([[2.0, 2.0], [-3.0, 2.0], [np.nan, 1.0], [5.0, 5.0]])
    uv1 = np.array([[2.0, 2.0], [2.0, 2.0], [1.0, 1.0], [30.0, 5.0]])  # last one outside image 1
    matches = Matches(uv0, uv1, np.ones(4), (16, 16), (16, 16))
    aggregator = DenseKeypointAggregator(GridConfig(cell_size=4, max_error=2))
    aggregator.add("a", "b", matches)
    features = aggregator.features()
    assert len(features["a"].keypoints) == 2 and len(features["b"].keypoints) == 1
    result = aggregator.assign("a", "b", matches)
    assert (result.matches0 >= 0).sum() == 1


def test_max_keypoints_keeps_the_most_voted_cells():
    rng = np.random.default_rng(0)
    uv = rng.uniform(0, 63, size=(2000, 2))
    scores = np.where(uv[:, 0] < 16, 1.0, 0.01)  # the left strip is strongly voted
    matches = Matches(uv, uv, scores, (64, 64), (64, 64))
    aggregator = DenseKeypointAggregator(GridConfig(cell_size=4, max_error=2, max_keypoints=20))
    aggregator.add("a", "b", matches)
    keypoints = aggregator.features()["a"].keypoints
    assert len(keypoints) == 20
    assert (keypoints[:, 0] < 16).all()


def _three_view_pairs(noise: float, num: int = 3000):
    """Raw matches among three 160x120 views of a plane, sampled independently per pair."""
    size = (160, 120)
    H = {name: homography(i + 7, size, strength=0.05) for i, name in enumerate("abc")}
    rng = np.random.default_rng(1)
    pairs = {}
    for name0, name1 in (("a", "b"), ("a", "c"), ("b", "c")):
        H01 = H[name1] @ np.linalg.inv(H[name0])
        uv0 = rng.uniform(-0.5, 159.5, size=(num, 2)) * [1, 0.75]
        uv1 = apply_h(H01, uv0) + rng.normal(scale=noise, size=(num, 2))
        inside = (uv1 >= -0.5).all(1) & (uv1 < np.array(size) - 0.5).all(1)
        pairs[name0, name1] = Matches(uv0[inside], uv1[inside], rng.uniform(0.2, 1, inside.sum()), size, size)
    return H, pairs


def _snap(pairs, config):
    aggregator = DenseKeypointAggregator(config)
    for (name0, name1), matches in pairs.items():
        aggregator.add(name0, name1, matches)
    features = aggregator.features()
    return features, {pair: aggregator.assign(*pair, matches) for pair, matches in pairs.items()}


def _closed_triangles(result) -> tuple[int, float]:
    """Keypoints of a matched in b and c whose b keypoint is matched in c: count, fraction closing (a->c)."""
    ab, ac, bc = result["a", "b"].matches0, result["a", "c"].matches0, result["b", "c"].matches0
    chained = np.flatnonzero((ab >= 0) & (ac >= 0))
    chained = chained[bc[ab[chained]] >= 0]
    return len(chained), float((bc[ab[chained]] == ac[chained]).mean())


def test_dense_matches_become_consistent_tracks_across_pairs():
    H, pairs = _three_view_pairs(noise=0.3)
    config = GridConfig(cell_size=8, max_error=2)
    features, result = _snap(pairs, config)

    # every surviving match is geometrically right: within 2 * max_error (+ noise) of the homography
    for (name0, name1), pm in result.items():
        i0 = np.flatnonzero(pm.matches0 >= 0)
        assert len(i0) > 80
        kp0 = features[name0].keypoints[i0].astype(np.float64)
        kp1 = features[name1].keypoints[pm.matches0[i0]].astype(np.float64)
        error = np.linalg.norm(apply_h(H[name1] @ np.linalg.inv(H[name0]), kp0) - kp1, axis=1)
        assert np.percentile(error, 95) < 2 * config.max_error + 1

    # three-view tracks form and close consistently; pixel-level rounding (no grid) rarely closes them
    count, closing = _closed_triangles(result)
    assert count >= 15 and closing > 0.8
    _, closing_without_grid = _closed_triangles(_snap(pairs, GridConfig(cell_size=1, max_error=1))[1])
    assert closing_without_grid < closing - 0.4


def test_aggregation_is_deterministic_and_rejects_inconsistent_sizes():
    _, pairs = _three_view_pairs(noise=0.3, num=500)
    runs = []
    for _ in range(2):
        aggregator = DenseKeypointAggregator(GridConfig())
        for pair, matches in pairs.items():
            aggregator.add(*pair, matches)
        features = aggregator.features()
        runs.append((features["a"].keypoints, aggregator.assign("a", "b", pairs["a", "b"]).matches0))
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    aggregator = DenseKeypointAggregator(GridConfig())
    aggregator.add("a", "b", pairs["a", "b"])
    wrong = pairs["a", "c"]
    with pytest.raises(DensematchError, match="two sizes"):
        aggregator.add("a", "c", Matches(wrong.kpts0, wrong.kpts1, wrong.scores, (100, 100), wrong.size1))
