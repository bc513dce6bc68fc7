"""The picture of a benchmark run: the fraction of pairs below each error (the curve whose area is the AUC)."""

from __future__ import annotations

import numpy as np

from ..plots import line_plot, recall_curve
from .tasks import HOMOGRAPHY_AUC_THRESHOLDS_PX, POSE_AUC_THRESHOLDS_DEG


def error_curves_picture(summary: dict) -> np.ndarray | None:
    """RGB picture of the error curves of a summary with its rows (see :func:`run_benchmark`), or None."""
    task, rows, name = summary["task"], summary.get("_rows", []), f"{summary['dataset']}, {summary['matcher']}"
    if task == "relative_pose":
        top = max(POSE_AUC_THRESHOLDS_DEG)
        aucs = ", ".join(f"@{t}: {summary.get(f'auc@{t}', 0):.1f}" for t in POSE_AUC_THRESHOLDS_DEG)
        curves = [(f"pose: max(R, t) error   AUC {aucs}", *recall_curve([r["err_deg"] for r in rows], top)),
                  ("rotation error", *recall_curve([r.get("err_R_deg") for r in rows], top)),
                  ("translation direction error", *recall_curve([r.get("err_t_deg") for r in rows], top))]
        return line_plot(curves, title=f"relative pose: {name} ({len(rows)} pairs)", xlabel="error (degrees)",
                         ylabel="fraction of pairs", xlim=(0, top), ylim=(0, 1), vlines=POSE_AUC_THRESHOLDS_DEG)
    if task == "homography":
        top, key = max(HOMOGRAPHY_AUC_THRESHOLDS_PX), summary.get("auc_error_field", "err_px")
        aucs = ", ".join(f"@{t}px: {summary.get(f'auc@{t}px', 0):.1f}" for t in HOMOGRAPHY_AUC_THRESHOLDS_PX)
        curves = [(f"corner error   AUC {aucs}", *recall_curve([r.get(key) for r in rows], top))]
        return line_plot(curves, title=f"homography: {name} ({len(rows)} pairs)", xlabel="mean corner error (px)",
                         ylabel="fraction of pairs", xlim=(0, top), ylim=(0, 1),
                         vlines=HOMOGRAPHY_AUC_THRESHOLDS_PX)
    if task == "gt_correspondences" and summary.get("mean_accuracy_curve"):
        xs, ys = summary["accuracy_thresholds_px"], np.asarray(summary["mean_accuracy_curve"]) / 100
        label = f"mean accuracy   mAA@10px {summary['mAA@10px']:.1f}, @20px {summary['mAA@20px']:.1f}"
        return line_plot([(label, [0, *xs], [0, *ys])], title=f"WxBS: {name} ({len(rows)} pairs)",
                         xlabel="threshold (px)", ylabel="accuracy", xlim=(0, max(xs)), ylim=(0, 1),
                         vlines=(10, 20))
    return None
