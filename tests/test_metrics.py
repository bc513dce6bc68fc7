"""Metrics against hand-computed values (and one independent re-implementation of the AUC)."""

from __future__ import annotations

import numpy as np
import pytest

from densematch.eval import accuracy_curve, error_auc, mean_average_accuracy, pck, summarize


def test_error_auc_hand_computed():
    # errors 1, 2 and a failure; recall curve (0,0) (1,1/3) (2,2/3), held at 2/3 up to 5:
    # area = 1/6 + 1/2 + 3 * 2/3 = 8/3, AUC@5 = 8/15
    assert error_auc([1.0, 2.0, None], [5]) == pytest.approx([8 / 15])
    # AUC@1.5: (0,0) (1,1/3) then held at 1/3 up to 1.5: 1/6 + 0.5/3 = 1/3, / 1.5 = 2/9
    assert error_auc([2.0, 1.0, float("inf")], [1.5]) == pytest.approx([2 / 9])
    # everything at zero error gives a perfect score, everything failed gives zero
    assert error_auc([0.0, 0.0], [5, 10]) == pytest.approx([1.0, 1.0])
    assert error_auc([None, float("nan")], [5]) == [0.0]
    assert error_auc([], [5]) == [0.0]


def test_error_auc_matches_a_numerical_integration():
    """Integrate the piecewise-linear recall curve on a fine grid (held constant after the last error < t)."""
    errors = np.random.default_rng(0).exponential(8.0, 200)
    errors[:20] = np.inf
    sorted_errors = np.sort(errors)
    recall = np.arange(1, 201) / 200
    for t in (5, 10, 20):
        below = sorted_errors < t
        x = np.concatenate([[0.0], sorted_errors[below]])
        y = np.concatenate([[0.0], recall[below]])
        grid = np.linspace(0, t, 400001)
        curve = np.interp(grid, x, y)  # np.interp holds the last value beyond x[-1]
        assert error_auc(errors, [t])[0] == pytest.approx(curve.mean(), abs=1e-4)


def test_accuracy_and_pck_hand_computed():
    assert accuracy_curve([0.5, 1.0, 3.0, None], [1, 2, 3]) == [0.5, 0.5, 0.75]
    predicted = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [np.nan, 0.0]])
    target = np.zeros((4, 2))
    assert pck(predicted, target, [1, 5, 4.9]) == [0.5, 0.75, 0.5]  # distances 0, 5, 1, nan
    with pytest.raises(ValueError):
        pck(predicted[:2], target, [1])


def test_mean_average_accuracy_hand_computed():
    thresholds = (1, 2, 3, 4)
    curves = [[0.0, 0.5, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    assert mean_average_accuracy(curves, 2, thresholds) == pytest.approx((0 + 0.5 + 1 + 1) / 4)
    assert mean_average_accuracy(curves, 4, thresholds) == pytest.approx((2.5 + 4) / 8)
    assert mean_average_accuracy([], 10) == 0.0


def test_summaries_count_failures_as_infinite_error():
    rows = [
        {"err_deg": 1.0, "num_matches": 10, "num_inliers": 8, "time_match_s": 0.5},
        {"err_deg": None, "num_matches": 4, "num_inliers": 0, "time_match_s": 0.25},
    ]
    summary = summarize("relative_pose", rows)
    assert summary["num_pairs"] == 2 and summary["num_failed"] == 1
    # AUC@5 of errors (1, inf): (0.5 * 1 * 0.5 + 4 * 0.5) / 5 = 0.45
    assert summary["auc@5"] == pytest.approx(45.0)
    assert summary["mean_num_matches"] == 7 and summary["mean_time_match_s"] == 0.375
    homography = summarize("homography", [{"err_px": 0.0, "err_eval_px": 0.0, "num_matches": 1}])
    assert homography["auc@3px"] == 100.0 and homography["auc_error_field"] == "err_eval_px"
