"""Match the pairs of a pair list and write hloc-compatible OUT/features.h5 and OUT/matches.h5.

Keypoint matchers (sift) store each image's detections; dense matchers (RoMa family) have their
matches snapped to shared per-image keypoints (--cell-size, --max-error) so that tracks form.
Runs are resumable: pairs already in OUT are skipped, and files are replaced atomically at every
checkpoint. --workers N shards the pairs over N Ray workers (one per GPU, else one per CPU core);
the output is identical to a single-process run.
"""

from __future__ import annotations

import argparse

from ..registry import DEFAULT_MODEL

HELP = "match an image collection along a pair list into hloc-format HDF5 files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", metavar="IMAGES_DIR", help="folder of the images named in the pair list")
    parser.add_argument("--pairs", required=True, help="pair list (name0 name1 per line)")
    parser.add_argument(
        "--matcher", default=DEFAULT_MODEL, help="sift or a registered model name (default: %(default)s, offline)"
    )
    parser.add_argument("--weights", help="checkpoint of the matcher (default: the published weights)")
    parser.add_argument("--output", required=True, metavar="OUT", help="output folder")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (Ray when > 1; default 1)")
    parser.add_argument(
        "--ray-address", help="address of a running Ray cluster (default: RAY_ADDRESS or local)"
    )
    parser.add_argument("--device", help="torch device of each worker (default: cuda if available, else cpu)")
    parser.add_argument(
        "--num",
        type=int,
        help="correspondences per pair (dense; default 5000) / keypoints per image (sift; 8192)",
    )
    parser.add_argument(
        "--matcher-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument of the matcher, repeatable (e.g. root_sift=true, mutual=true, coarse_res=280)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the dense sampling (default 0)")
    parser.add_argument("--batch-size", type=int, default=1, help="pairs per model call (default 1)")
    parser.add_argument(
        "--cell-size", type=int, default=4, help="dense: one keypoint per cell of this many px"
    )
    parser.add_argument(
        "--max-error", type=float, default=2.0, help="dense: max px from a match to its keypoint"
    )
    parser.add_argument(
        "--max-keypoints", type=int, default=8192, help="dense: keypoints kept per image (0: all)"
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=256, help="pairs between checkpoints (default 256)"
    )
    parser.add_argument("--overwrite", action="store_true", help="start from scratch instead of resuming")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..errors import DensematchError
    from ..sfm.keypoints import GridConfig
    from ..sfm.matching import MatchConfig, match_collection, summarize
    from ..sfm.pairs import read_pairs
    from ..sfm.workers import MatcherSpec

    for option in ("workers", "batch_size", "checkpoint_every"):
        if getattr(args, option) < 1:
            raise DensematchError(f"--{option.replace('_', '-')} must be at least 1")
    num = args.num if args.num is not None else (8192 if args.matcher == "sift" else 5000)
    options = tuple(parse_option(text) for text in args.matcher_option)
    spec = MatcherSpec(args.matcher, args.weights, num, args.seed, args.device, options=options)
    config = MatchConfig(
        workers=args.workers,
        ray_address=args.ray_address,
        batch_size=args.batch_size,
        checkpoint_every=args.checkpoint_every,
        grid=GridConfig(args.cell_size, args.max_error, max_keypoints=args.max_keypoints or None),
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    outputs = match_collection(args.images, read_pairs(args.pairs), args.output, spec, config)
    summary = summarize(outputs)
    print(
        f"{summary['pairs']} pairs ({summary['new_pairs']} new, {summary['pairs_per_second']:.2f} pairs/s), "
        f"{summary['images']} images, {summary['mean_keypoints']:.0f} keypoints/image, "
        f"{summary['mean_matches']:.0f} matches/pair -> {outputs.features}, {outputs.matches}"
    )
    return 0


def parse_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> ``(key, value)``; VALUE is read as JSON (numbers, true, null) or kept as text."""
    import json

    from ..errors import DensematchError

    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise DensematchError(
            f"--matcher-option expects KEY=VALUE with a Python identifier as KEY, got {text!r}"
        )
    lowered = value.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
