"""Per-pair evaluation and per-benchmark summaries of the three benchmark tasks.

relative_pose
    Matches (rescaled to the evaluation resolution) -> essential matrix -> ``R, t``
    (:func:`densematch.geometry.estimate_relative_pose`). Row: ``R``, ``t``, ``err_R_deg``,
    ``err_t_deg``, ``err_deg = max`` of the two (``None`` on failure). Summary: ``auc@5``, ``auc@10``,
    ``auc@20`` in percent (:func:`~densematch.eval.metrics.error_auc`, failures = infinite error), and
    LoFTR's matching precision ``precision@5e-4`` (row ``precision``: fraction of matches with squared
    normalised symmetric epipolar error < 5e-4 under the GT pose, :func:`~densematch.geometry.epipolar_precision`;
    mean over pairs in percent, as the LoFTR / S2LD / IMAMatch tables).
    With dense ground truth (``depth0`` + ``valid0``) also ``pck@1px``, ``pck@3px``, ``pck@5px`` of
    the dense warp: per pair the fraction of valid GT pixels whose predicted image-1 position is
    within k px of the GT warp ``warp_from_depth(depth0, K0, K1, T_0to1)``, averaged over pairs.
homography
    Matches -> ``H`` (:func:`densematch.geometry.estimate_homography`). Row: ``H``, ``err_px`` = mean
    corner error in image-1 pixels. Summary: ``auc@3px``, ``auc@5px``, ``auc@10px`` in percent. When
    the layout prescribes an evaluation resolution (HPatches: shorter side 480), the threshold and
    the error are taken at that resolution (``err_eval_px``), as in DKM / RoMa.
gt_correspondences
    The published WxBS protocol (Mishkin et al., BMVC 2015; ``ducha-aiki/wxbs-benchmark``,
    ``evaluation.evaluate_Fs`` and ``metrics.fraction_of_gt_corrs_consisent_with_F``): estimate ``F``
    from the matches (default: OpenCV MAGSAC++, 0.25 px, confidence 0.999, 100000 iterations, the
    settings of the benchmark's SIFT example), compute the symmetric epipolar distance of every
    hand-labelled GT correspondence under that ``F``, and per pair the fraction of GT
    correspondences with distance ``<= t`` for t = 1..20 px. ``mAA@10px`` is the mean of these
    fractions over t = 1..10 and over pairs (``mAA@20px``: t = 1..20). A failed estimate scores 0.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import InputShapeError
from ..geometry import (
    RansacConfig,
    epipolar_precision,
    estimate_fundamental,
    estimate_homography,
    estimate_relative_pose,
    homography_corner_error,
    refine_pose_ba,
    relative_pose_error,
    rescale_intrinsics,
    rescale_pixels,
    symmetric_epipolar_distance,
    warp_from_depth,
)
from .datasets import BenchmarkPair, DatasetFormatError
from .metrics import WXBS_THRESHOLDS_PX, accuracy_curve, error_auc, mean_average_accuracy
from .predictions import Prediction

POSE_AUC_THRESHOLDS_DEG = (5, 10, 20)
HOMOGRAPHY_AUC_THRESHOLDS_PX = (3, 5, 10)
PCK_THRESHOLDS_PX = (1, 3, 5)

DEFAULT_ESTIMATORS = {
    # LoFTR / RoMa relative pose: cv2.findEssentialMat(RANSAC, prob 0.99999, 0.5 px), OpenCV's 1000 iterations
    "relative_pose": RansacConfig("opencv-ransac", threshold_px=0.5, confidence=0.99999, max_iters=1000),
    # DKM / RoMa HPatches: cv2.findHomography(RANSAC, 3 px at the evaluation resolution, 0.99999)
    "homography": RansacConfig("opencv-ransac", threshold_px=3.0, confidence=0.99999, max_iters=2000),
    # WxBS benchmark SIFT example: cv2.findFundamentalMat(USAC_MAGSAC, 0.25 px, 0.999, 100000)
    "gt_correspondences": RansacConfig(
        "opencv-magsac", threshold_px=0.25, confidence=0.999, max_iters=100000
    ),
}


def _common_row(pair: BenchmarkPair, prediction: Prediction) -> dict:
    row = {
        "pair_id": pair.pair_id,
        "image0": pair.name0,
        "image1": pair.name1,
        "num_matches": len(prediction.matches),
        "time_match_s": round(prediction.time_match_s, 4),
    }
    if prediction.time_dense_s is not None:
        row["time_dense_s"] = round(prediction.time_dense_s, 4)
    return row


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def evaluate_pose_pair(pair: BenchmarkPair, prediction: Prediction, estimator: RansacConfig,
                       refinement: str | None = None) -> dict:
    """One ``results.jsonl`` row of a relative-pose pair (see the module docstring).

    ``refinement="ba"`` refines the RANSAC pose by two-view bundle adjustment over its inliers, weighted by
    the match scores (:func:`densematch.geometry.refine_pose_ba`, IMAMatch's ScanNet protocol).
    """
    m = prediction.matches
    K0 = rescale_intrinsics(pair.gt["K0"], pair.eval_scale0)
    K1 = rescale_intrinsics(pair.gt["K1"], pair.eval_scale1)
    kpts0, kpts1 = rescale_pixels(m.kpts0, pair.eval_scale0), rescale_pixels(m.kpts1, pair.eval_scale1)
    estimate = estimate_relative_pose(kpts0, kpts1, K0, K1, estimator)
    if estimate is not None and refinement == "ba":
        inl = estimate.inliers
        R, t = refine_pose_ba(kpts0[inl], kpts1[inl], K0, K1, estimate.R, estimate.t, m.scores[inl])
        estimate = replace(estimate, R=R, t=t / max(np.linalg.norm(t), 1e-12))
    row = _common_row(pair, prediction)
    row["precision"] = epipolar_precision(kpts0, kpts1, K0, K1, pair.gt["T_0to1"])
    if estimate is None:
        row.update(num_inliers=0, R=None, t=None, err_R_deg=None, err_t_deg=None, err_deg=None)
    else:
        err_R, err_t = relative_pose_error(estimate.R, estimate.t, pair.gt["T_0to1"])
        row.update(
            num_inliers=estimate.num_inliers,
            R=estimate.R.tolist(),
            t=estimate.t.tolist(),
            err_R_deg=err_R,
            err_t_deg=err_t,
            err_deg=max(err_R, err_t),
        )
    if pair.has_dense_gt:
        row.update(dense_pck(pair, prediction))
    return row


def evaluate_homography_pair(pair: BenchmarkPair, prediction: Prediction, estimator: RansacConfig) -> dict:
    """One ``results.jsonl`` row of a homography pair (see the module docstring)."""
    m = prediction.matches
    scale = pair.eval_scale1
    estimate = estimate_homography(
        m.kpts0, m.kpts1, estimator.replace(threshold_px=estimator.threshold_px / scale)
    )
    row = _common_row(pair, prediction)
    if estimate is None:
        row.update(num_inliers=0, H=None, err_px=None)
    else:
        error = homography_corner_error(estimate.H, pair.gt["H_0to1"], m.size0)
        row.update(num_inliers=estimate.num_inliers, H=estimate.H.tolist(), err_px=_finite_or_none(error))
    if scale != 1.0:
        row["err_eval_px"] = None if row["err_px"] is None else row["err_px"] * scale
    return row


def evaluate_correspondence_pair(
    pair: BenchmarkPair, prediction: Prediction, estimator: RansacConfig
) -> dict:
    """One ``results.jsonl`` row of a WxBS-style pair (see the module docstring)."""
    m = prediction.matches
    corrs = pair.gt["corrs_0to1"]
    estimate = estimate_fundamental(m.kpts0, m.kpts1, estimator)
    row = _common_row(pair, prediction)
    if estimate is None:
        errors = np.full(len(corrs), np.inf)
        row.update(num_inliers=0, F=None)
    else:
        errors = symmetric_epipolar_distance(corrs[:, :2], corrs[:, 2:], estimate.F)
        row.update(num_inliers=estimate.num_inliers, F=estimate.F.tolist())
    curve = accuracy_curve(errors, WXBS_THRESHOLDS_PX)
    row.update(
        mean_epi_err_px=_finite_or_none(float(np.mean(errors))),
        acc_curve=curve,
        **{"aa@10px": mean_average_accuracy([curve], 10)},
    )
    return row


EVALUATORS = {
    "relative_pose": evaluate_pose_pair,
    "homography": evaluate_homography_pair,
    "gt_correspondences": evaluate_correspondence_pair,
}


# --- dense ground truth -------------------------------------------------------------------------


def _load_map(path: Path, what: str) -> np.ndarray:
    if not Path(path).is_file():
        raise DatasetFormatError(f"{what} file not found: {path}")
    try:
        if Path(path).suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with Image.open(path) as image:
            return np.asarray(image)
    except (OSError, ValueError) as exc:
        raise DatasetFormatError(f"cannot read {what} {path}: {exc}") from None


def dense_gt_warp(pair: BenchmarkPair, size1: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The GT warp ``(H0, W0, 2)`` (image-1 OpenCV pixels) and its validity ``(H0, W0)`` of a pair.

    Valid = ``valid0`` (covisible, not a hole) and the projection lands in front of camera 1 and
    inside image 1 of size ``size1 = (W1, H1)``.
    """
    depth0 = np.asarray(_load_map(pair.gt["depth0"], "depth0"), dtype=np.float64)
    valid0 = _load_map(pair.gt["valid0"], "valid0")
    valid0 = (valid0 if valid0.ndim == 2 else valid0[..., 0]).astype(bool)
    if depth0.ndim != 2 or depth0.shape != valid0.shape:
        raise InputShapeError(
            f"depth0 {depth0.shape} and valid0 {valid0.shape} of {pair.pair_id} must be equal (H, W)"
        )
    uv1, valid = warp_from_depth(
        torch.from_numpy(depth0),
        torch.from_numpy(np.asarray(pair.gt["K0"])),
        torch.from_numpy(np.asarray(pair.gt["K1"])),
        torch.from_numpy(np.asarray(pair.gt["T_0to1"])),
        size1=tuple(size1),
    )
    return uv1.numpy(), valid.numpy() & valid0


def dense_pck(pair: BenchmarkPair, prediction: Prediction) -> dict:
    """``pck@kpx`` of the predicted dense warp against the GT warp (``None`` without a dense prediction)."""
    keys = [f"pck@{k}px" for k in PCK_THRESHOLDS_PX]
    if not prediction.has_dense:
        return dict.fromkeys(keys)
    gt_uv1, valid = dense_gt_warp(pair, prediction.matches.size1)
    if prediction.warp.shape != gt_uv1.shape:
        raise InputShapeError(
            f"the predicted warp {prediction.warp.shape} of {pair.pair_id} does not match "
            f"depth0 {gt_uv1.shape[:2]}"
        )
    if not valid.any():
        return {**dict.fromkeys(keys), "num_valid_gt": 0}
    errors = np.linalg.norm(prediction.warp[valid].astype(np.float64) - gt_uv1[valid], axis=-1)
    return {
        **dict(zip(keys, accuracy_curve(errors, PCK_THRESHOLDS_PX), strict=True)),
        "num_valid_gt": int(valid.sum()),
    }


# --- summaries ----------------------------------------------------------------------------------


def _mean(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return float(np.mean(values)) if values else None


def _percent(values) -> list[float]:
    return [round(100.0 * v, 4) for v in values]


def summarize(task: str, rows: list[dict]) -> dict:
    """The task's summary metrics (percentages) and a few statistics over the result rows."""
    summary: dict = {"num_pairs": len(rows)}
    if task == "relative_pose":
        aucs = _percent(error_auc([r["err_deg"] for r in rows], POSE_AUC_THRESHOLDS_DEG))
        summary.update({f"auc@{t}": a for t, a in zip(POSE_AUC_THRESHOLDS_DEG, aucs, strict=True)})
        summary["num_failed"] = sum(r["err_deg"] is None for r in rows)
        precision = _mean(rows, "precision")
        summary["precision@5e-4"] = None if precision is None else round(100.0 * precision, 4)
        if any(f"pck@{PCK_THRESHOLDS_PX[0]}px" in r for r in rows):
            for k in PCK_THRESHOLDS_PX:
                value = _mean(rows, f"pck@{k}px")
                summary[f"pck@{k}px"] = None if value is None else round(100.0 * value, 4)
    elif task == "homography":
        key = "err_eval_px" if any("err_eval_px" in r for r in rows) else "err_px"
        aucs = _percent(error_auc([r[key] for r in rows], HOMOGRAPHY_AUC_THRESHOLDS_PX))
        summary.update({f"auc@{t}px": a for t, a in zip(HOMOGRAPHY_AUC_THRESHOLDS_PX, aucs, strict=True)})
        summary["num_failed"] = sum(r["err_px"] is None for r in rows)
        summary["auc_error_field"] = key
    elif task == "gt_correspondences":
        curves = [r["acc_curve"] for r in rows]
        summary["mAA@10px"] = round(100.0 * mean_average_accuracy(curves, 10), 4)
        summary["mAA@20px"] = round(100.0 * mean_average_accuracy(curves, 20), 4)
        summary["num_failed"] = sum(r["F"] is None for r in rows)
        summary["accuracy_thresholds_px"] = list(WXBS_THRESHOLDS_PX)
        summary["mean_accuracy_curve"] = _percent(np.mean(curves, axis=0)) if curves else []
    else:
        raise ValueError(f"unknown task '{task}'")
    summary["mean_num_matches"] = _mean(rows, "num_matches")
    summary["mean_num_inliers"] = _mean(rows, "num_inliers")
    summary["mean_time_match_s"] = _mean(rows, "time_match_s")
    return summary
