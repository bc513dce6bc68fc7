"""Evaluate a matcher on a benchmark folder: relative pose AUC, homography AUC, WxBS mAA, dense PCK.

DATASET_DIR is a folder with a pairs.json (types relative_pose, homography, gt_correspondences; pairs
with depth0/valid0 also get dense PCK) or a standard layout: MegaDepth-1500, ScanNet-1500, HPatches
sequences, WxBS. Writes OUT/summary.json, OUT/results.jsonl (one object per pair) and caches the
matches in OUT/predictions/, so that --metrics-only (e.g. with another --estimator) never re-runs
the matcher.

examples:
  densematch benchmark shared/data/kitti_odometry_00 --matcher sift --output runs/kitti_sift
  densematch benchmark data/megadepth --matcher roma_outdoor --num 5000 --output runs/mega_roma
  densematch benchmark data/megadepth --matcher roma_outdoor --output runs/mega_roma \\
      --metrics-only --estimator poselib
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import DensematchError
from ..geometry import ESTIMATORS
from ..registry import DEFAULT_MODEL

HELP = "evaluate a matcher on a benchmark (pose / homography AUC, WxBS mAA, dense PCK)"

SIFT_DEFAULT_NUM = 8000  # keypoints per image, as in the reference SIFT runs of shared/data/README.md
DENSE_DEFAULT_NUM = 5000  # sampled matches per pair, as in the RoMa benchmarks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("dataset", metavar="DATASET_DIR", help="benchmark folder (or a pairs.json file)")
    parser.add_argument(
        "--matcher",
        default=DEFAULT_MODEL,
        help="'sift' or a registered model (see densematch.list_matchers(); default: %(default)s, offline)",
    )
    parser.add_argument(
        "--weights", default=None, help="checkpoint file for a learned matcher (default: published)"
    )
    parser.add_argument(
        "--num",
        type=int,
        default=None,
        help=f"matches sampled per pair for dense matchers (default {DENSE_DEFAULT_NUM}); "
        f"keypoints per image for sift (default {SIFT_DEFAULT_NUM})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the dense match sampling and of RANSAC")
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra matcher option, repeatable (e.g. ratio=0.9, root_sift=true, coarse_res=280)",
    )
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--max-pairs", type=int, default=None, help="evaluate only the first N pairs")
    estimator = parser.add_argument_group("robust estimation (defaults: the published protocol of each task)")
    estimator.add_argument("--estimator", choices=ESTIMATORS, default=None, help="robust estimator")
    estimator.add_argument("--threshold", type=float, default=None, help="inlier threshold in pixels")
    estimator.add_argument("--confidence", type=float, default=None, help="RANSAC confidence")
    estimator.add_argument("--max-iters", type=int, default=None, help="RANSAC iteration limit")
    run = parser.add_argument_group("caching")
    run.add_argument(
        "--metrics-only", action="store_true", help="only recompute the metrics from cached predictions"
    )
    run.add_argument(
        "--overwrite", action="store_true", help="delete cached predictions of another configuration"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars and no results table")


def parse_options(items: list[str]) -> dict:
    """``["ratio=0.9", "root_sift=true", "name=x"]`` -> ``{"ratio": 0.9, "root_sift": True, "name": "x"}``."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DensematchError(f"--option expects KEY=VALUE, got '{item}'")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def run(args: argparse.Namespace) -> int:
    import torch

    from ..eval import BenchmarkOptions, format_results, load_benchmark, run_benchmark
    from ..eval.tasks import DEFAULT_ESTIMATORS
    from ..matchers import get_matcher

    benchmark = load_benchmark(args.dataset).subset(args.max_pairs)
    num = (
        args.num
        if args.num is not None
        else (SIFT_DEFAULT_NUM if args.matcher == "sift" else DENSE_DEFAULT_NUM)
    )
    if num < 1:
        raise DensematchError(f"--num must be positive, got {num}")
    options = parse_options(args.option)
    config = {
        "matcher": args.matcher,
        "weights": args.weights,
        "num": num,
        "seed": args.seed,
        "options": options,
    }
    try:
        estimator = DEFAULT_ESTIMATORS[benchmark.task].replace(
            method=args.estimator,
            threshold_px=args.threshold,
            confidence=args.confidence,
            max_iters=args.max_iters,
            seed=args.seed,
        )
    except ValueError as exc:
        raise DensematchError(str(exc)) from None
    matcher = None
    if not args.metrics_only:
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            matcher = get_matcher(
                args.matcher, device=device, weights=args.weights, num=num, seed=args.seed, **options
            )
        except TypeError as exc:  # an --option the matcher does not take
            raise DensematchError(f"bad --option for matcher '{args.matcher}': {exc}") from None
        except ValueError as exc:
            raise DensematchError(str(exc)) from None
    result = run_benchmark(
        benchmark,
        matcher,
        config,
        args.output,
        BenchmarkOptions(
            estimator=estimator,
            metrics_only=args.metrics_only,
            overwrite=args.overwrite,
            progress=not args.quiet,
        ),
    )
    if not args.quiet:
        print(format_results(result.summary, result.rows))
        print(f"\nwrote {args.output}/summary.json and results.jsonl", file=sys.stderr)
    return 0
