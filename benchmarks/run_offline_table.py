"""The offline-models table: every matcher on every set of ../shared/data, one protocol, one run.

For each matcher: ``densematch benchmark`` on the five labelled sets with each set's published default
estimator (as ``run_sift_baselines.py``), then the Sacre-Coeur collection through ``densematch pairs
--exhaustive``, ``match-pairs`` and ``reconstruct --threads 1 --seed 0`` (registered images / 3D points).
Seconds per pair are the matcher's own time (``mean_time_match_s``; for SfM, matching time per pair).

    PYTHONPATH=. python benchmarks/run_offline_table.py --matchers sift tiny_roma_l2m --output out/offline

Cached predictions are reused on a second run; the Markdown table goes to stdout and OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SETS = ("scannet_superglue", "kitti_odometry_00", "oxford_graf", "oxford_boat", "wxbs_subset")
HEADLINE = {  # the metric shown per set (all three are in each summary.json)
    "relative_pose": ("auc@5", "auc@10", "auc@20"),
    "homography": ("auc@3px", "auc@5px", "auc@10px"),
    "gt_correspondences": ("mAA@10px", "mAA@20px"),
}


def run_sets(matcher: str, data: Path, output: Path) -> dict:
    from densematch.cli import main as densematch_main

    results = {}
    for name in SETS:
        out = output / matcher / name
        if densematch_main(["benchmark", str(data / name), "--model", matcher, "--output", str(out), "--quiet"]):
            raise SystemExit(f"benchmark of {matcher} on {name} failed")
        results[name] = json.loads((out / "summary.json").read_text())
    return results


def run_sfm(matcher: str, data: Path, output: Path) -> dict:
    from densematch.cli import main as densematch_main

    images = data / "multiview_sacre_coeur" / "images"
    out = output / matcher / "sacre_coeur"
    out.mkdir(parents=True, exist_ok=True)
    pairs = out / "pairs.txt"
    if densematch_main(["pairs", str(images), "--exhaustive", "--output", str(out)]):
        raise SystemExit("pairs failed")
    start = time.perf_counter()
    if densematch_main(["match-pairs", str(images), "--pairs", str(pairs), "--model", matcher,
                        "--output", str(out / "matches")]):
        raise SystemExit(f"match-pairs of {matcher} failed")
    seconds = time.perf_counter() - start
    densematch_main(["reconstruct", str(out / "matches"), "--images", str(images), "--output", str(out / "sfm"),
                     "--threads", "1", "--seed", "0"])
    summary_file = out / "sfm" / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    num_pairs = len(pairs.read_text().split("\n")) - 1
    return {"summary": summary, "seconds_per_pair": seconds / max(num_pairs, 1)}


def cell(summary: dict) -> str:
    keys = HEADLINE[summary["task"]]
    return " / ".join(f"{summary[k]:.1f}" for k in keys) + f" ({summary['mean_time_match_s']:.2f} s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--output", type=Path, default=Path("out/offline"))
    parser.add_argument("--matchers", nargs="+", default=["sift", "tiny_roma_l2m"])
    parser.add_argument("--threads", type=int, default=1, help="OpenCV / torch threads (the machine is shared)")
    parser.add_argument("--no-sfm", action="store_true", help="skip the Sacre-Coeur reconstruction")
    args = parser.parse_args()

    import cv2
    import torch

    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    header = ["matcher", *SETS, "sacre_coeur SfM"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for matcher in args.matchers:
        results = run_sets(matcher, args.data, args.output)
        sfm = "-"
        if not args.no_sfm:
            done = run_sfm(matcher, args.data, args.output)
            s = done["summary"]
            if s:
                sfm = (f"{s['num_registered_images']}/{s['num_input_images']} reg., {s['num_points3D']} pts "
                       f"({done['seconds_per_pair']:.2f} s)")
            else:
                sfm = f"no model ({done['seconds_per_pair']:.2f} s)"
        lines.append("| " + " | ".join([f"`{matcher}`", *(cell(results[n]) for n in SETS), sfm]) + " |")
        (args.output / "table.md").write_text("\n".join(lines) + "\n")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
