"""Evaluate a matcher on a benchmark folder: relative pose AUC, homography AUC, WxBS mAA, dense PCK.

DATASET_DIR is a folder with a pairs.json (types relative_pose, homography, gt_correspondences; pairs
with depth0/valid0 also get dense PCK) or a standard layout: MegaDepth-1500, ScanNet-1500, HPatches
sequences, WxBS. Writes OUT/summary.json, OUT/results.jsonl (one object per pair), OUT/curves.png
(the error curves behind the AUCs) and caches the matches in OUT/predictions/, so that --metrics-only
(e.g. with another --estimator) never re-runs the matcher; its results go beside the first ones
(summary.<estimator>.json, ...), never over them.

examples:
  densematch benchmark shared/data/kitti_odometry_00 --model sift --output runs/kitti_sift
  densematch benchmark data/megadepth --model roma_outdoor --num 5000 --output runs/mega_roma
  densematch benchmark data/megadepth --model roma_outdoor --output runs/mega_roma \\
      --metrics-only --estimator poselib
"""

from __future__ import annotations

import argparse
import sys

from ..defaults import ESTIMATORS
from ..registry import DEFAULT_MODEL
from . import common

HELP = "evaluate a matcher on a benchmark (pose / homography AUC, WxBS mAA, dense PCK)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET_DIR", help="benchmark folder (or a pairs.json file)")
    common.add_model(parser, default=DEFAULT_MODEL)
    common.add_num(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the dense match sampling and of RANSAC")
    common.add_device(parser)
    common.add_output(parser)
    parser.add_argument("--max-pairs", type=common.positive_int, default=None, metavar="N",
                        help="evaluate only the first N pairs")
    estimator = parser.add_argument_group("robust estimation (defaults: the published protocol of each task)")
    estimator.add_argument("--estimator", choices=ESTIMATORS, default=None, help="robust estimator")
    estimator.add_argument("--threshold", type=float, default=None, help="inlier threshold in pixels")
    estimator.add_argument("--confidence", type=float, default=None, help="RANSAC confidence")
    estimator.add_argument("--max-iters", type=int, default=None, help="RANSAC iteration limit")
    estimator.add_argument("--pose-refinement", choices=("ba",), default=None,
                           help="refine relative poses by two-view bundle adjustment (IMAMatch's ScanNet protocol)")
    run = parser.add_argument_group("caching")
    run.add_argument(
        "--metrics-only", action="store_true", help="only recompute the metrics from cached predictions"
    )
    run.add_argument(
        "--overwrite", action="store_true", help="delete cached predictions of another configuration"
    )
    common.add_quiet(parser, "progress bars and no results table")


def run(args: argparse.Namespace) -> int:
    from ..eval import BenchmarkOptions, format_results, load_benchmark, run_benchmark
    from ..eval.tasks import DEFAULT_ESTIMATORS

    model = common.require_model(args)
    num = common.default_num(model, args.num)
    output = common.check_output_folder(args.output)
    options = common.checked_options(args, model)
    benchmark = load_benchmark(args.dataset).subset(args.max_pairs)
    config = {
        "matcher": model,
        "weights": args.weights,
        "num": num,
        "seed": args.seed,
        "options": {k: v for k, v in options.items() if k != "dinov2_weights"},
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
        raise common.ConfigError(str(exc)) from None
    matcher = None
    if not args.metrics_only:
        device = common.resolve_device(args.device)
        common.fetch_weights(model, args.weights, options)
        matcher = common.build_matcher(args, num=num, options=options, device=device)
    result = run_benchmark(
        benchmark,
        matcher,
        config,
        output,
        BenchmarkOptions(
            estimator=estimator,
            metrics_only=args.metrics_only,
            overwrite=args.overwrite,
            progress=not args.quiet,
            pose_refinement=args.pose_refinement,
        ),
    )
    if not args.quiet:
        print(format_results(result.summary, result.rows))
        print(f"\nwrote {result.summary_path} (and the results and curves beside it)", file=sys.stderr)
    return 0
