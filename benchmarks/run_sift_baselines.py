"""Run the SIFT baseline on every labelled set of ../shared/data and print a Markdown table.

Each set is evaluated with ``densematch benchmark`` (the same code path as the command line) and the
default estimator of its task (the published protocol), then re-scored with the other two
estimators from the cached matches (``--metrics-only``), so SIFT runs once per set.

    PYTHONPATH=. python benchmarks/run_sift_baselines.py --output out/sift_baselines

Numbers go into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SETS = ("scannet_superglue", "kitti_odometry_00", "oxford_graf", "oxford_boat", "wxbs_subset")
ESTIMATORS = ("opencv-ransac", "opencv-magsac", "poselib")
METRICS = {
    "relative_pose": ("auc@5", "auc@10", "auc@20"),
    "homography": ("auc@3px", "auc@5px", "auc@10px"),
    "gt_correspondences": ("mAA@10px", "mAA@20px"),
}


def table_row(name: str, summary: dict) -> str:
    """One Markdown table row of a summary.json."""
    task, estimator = summary["task"], summary["estimator"]
    metrics = ", ".join(f"{k} {summary[k]:.1f}" for k in METRICS[task])
    return (
        f"| {name} | {task} | {summary['num_pairs']} | {estimator['method']} {estimator['threshold_px']} px "
        f"| {metrics} | {summary['num_failed']} | {summary['mean_num_matches']:.0f} "
        f"| {summary['mean_time_match_s']:.2f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--output", type=Path, default=Path("out/sift_baselines"))
    parser.add_argument(
        "--threads", type=int, default=1, help="OpenCV / torch threads (the machine is shared)"
    )
    args = parser.parse_args()

    import cv2
    import torch

    from densematch.cli import main as densematch_main

    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    lines = []
    for name in SETS:
        out = args.output / name
        command = ["benchmark", str(args.data / name), "--model", "sift", "--num", "8000", "--output", str(out),
                   "--quiet"]  # 8000: the keypoint count of the recorded table (the default is now 8192)
        if densematch_main(command) != 0:
            return 1
        default = json.loads((out / "summary.json").read_text())
        rescoring = [e for e in ESTIMATORS if e != default["estimator"]["method"]]
        lines.append(table_row(name, default))
        for estimator in rescoring:  # from the cached matches: SIFT does not run again
            if densematch_main([*command, "--metrics-only", "--estimator", estimator]) != 0:
                return 1
            summaries = [json.loads(path.read_text()) for path in sorted(out.glob("summary.*.json"))]
            lines.append(table_row(name, next(s for s in summaries if s["estimator"]["method"] == estimator)))
    print("| set | task | pairs | estimator | metrics (%) | failed | matches/pair | s/pair (SIFT) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
