"""The standard matching metrics: pose / homography AUC, PCK, and the WxBS average accuracy.

All functions return fractions in [0, 1]; the benchmark reports them in percent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WXBS_THRESHOLDS_PX = tuple(range(1, 21))  # 1..20 px, the range of the curves of the WxBS benchmark


def _errors(errors) -> np.ndarray:
    """Errors as float64 with failures (None, NaN) turned into ``inf``."""
    values = np.array(
        [np.inf if e is None else e for e in np.asarray(errors, dtype=object).ravel()], dtype=np.float64
    )
    return np.where(np.isnan(values), np.inf, values)


def error_auc(errors, thresholds: Sequence[float]) -> list[float]:
    """Area under the recall-vs-error curve up to each threshold, divided by the threshold.

    This is ``error_auc`` of LoFTR / ``pose_auc`` of SuperGlue and RoMa: sort the errors, put the
    recall ``i / N`` at the ``i``-th smallest error, start the curve at ``(0, 0)``, cut it at the
    threshold (holding the last recall), integrate with the trapezoid rule and divide by the
    threshold. Failures (``None``, NaN, ``inf``) count as errors larger than any threshold.

    Args:
        errors: ``(N,)`` per-pair errors (degrees for poses, pixels for homographies).
        thresholds: the thresholds (same unit).

    Returns:
        One AUC in [0, 1] per threshold; 0 for every threshold when ``errors`` is empty.
    """
    errors = np.sort(_errors(errors))
    if len(errors) == 0:
        return [0.0 for _ in thresholds]
    recall = np.arange(1, len(errors) + 1) / len(errors)
    errors = np.concatenate([[0.0], errors])
    recall = np.concatenate([[0.0], recall])
    aucs = []
    for threshold in thresholds:
        last = int(np.searchsorted(errors, threshold))  # errors[:last] < threshold
        x = np.concatenate([errors[:last], [threshold]])
        y = np.concatenate([recall[:last], [recall[last - 1]]])
        aucs.append(float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / threshold))  # trapezoid rule
    return aucs


def accuracy_curve(errors, thresholds: Sequence[float]) -> list[float]:
    """Fraction of errors ``<= t`` for each threshold ``t`` (failures count as wrong); 0 when empty."""
    errors = _errors(errors)
    if len(errors) == 0:
        return [0.0 for _ in thresholds]
    return [float(np.mean(errors <= t)) for t in thresholds]


def pck(predicted, target, thresholds: Sequence[float]) -> list[float]:
    """Percentage of correct keypoints: fraction of points ``(N, 2)`` within ``t`` px of the target.

    A point is correct when its Euclidean distance to the target is ``<= t``. Non-finite predictions
    are wrong.
    """
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1, 2)
    target = np.asarray(target, dtype=np.float64).reshape(-1, 2)
    if predicted.shape != target.shape:
        raise ValueError(f"predicted and target points differ in shape: {predicted.shape} vs {target.shape}")
    return accuracy_curve(np.linalg.norm(predicted - target, axis=1), thresholds)


def mean_average_accuracy(
    curves, max_threshold: float, thresholds: Sequence[float] = WXBS_THRESHOLDS_PX
) -> float:
    """Mean over pairs of the average accuracy over the thresholds ``<= max_threshold``.

    ``curves`` is ``(num_pairs, len(thresholds))``: per pair, the accuracy at each threshold (from
    :func:`accuracy_curve`). With the default thresholds ``1, 2, ..., 20`` px, ``max_threshold=10``
    gives the WxBS ``mAA@10px`` (mean over thresholds 1..10 px). Averaging first over thresholds or
    first over pairs gives the same number. 0 when there are no pairs.
    """
    curves = np.asarray(curves, dtype=np.float64).reshape(-1, len(thresholds))
    keep = np.asarray(thresholds, dtype=np.float64) <= max_threshold
    if len(curves) == 0 or not keep.any():
        return 0.0
    return float(curves[:, keep].mean())
