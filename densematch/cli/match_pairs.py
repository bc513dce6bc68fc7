"""Match the pairs of a pair list and write hloc-compatible OUT/features.h5 and OUT/matches.h5.

Keypoint matchers (sift) store each image's detections; dense matchers (RoMa family) have their
matches snapped to shared per-image keypoints (--cell-size, --max-error) so that tracks form.
Runs are resumable: pairs already in OUT are skipped, and files are replaced atomically at every
checkpoint. --workers N shards the pairs over N Ray workers (one per GPU, else one per CPU core);
the output is identical to a single-process run. A missing or corrupt image is skipped with its pairs
(a warning each, a count at the end) unless --strict.

examples:
  densematch pairs images/ --exhaustive --output run/
  densematch match-pairs images/ --pairs run/pairs.txt --model sift --output run/
  densematch match-pairs images/ --pairs run/pairs.txt --model tiny_roma_v1_outdoor --output run/
"""

from __future__ import annotations

import argparse

from ..defaults import SIFT_NUM_KEYPOINTS
from ..registry import DEFAULT_MODEL
from . import common

HELP = "match an image collection along a pair list into hloc-format HDF5 files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", metavar="IMAGES_DIR", help="folder of the images named in the pair list")
    parser.add_argument("--pairs", required=True, metavar="FILE|DIR",
                        help="pair list (name0 name1 per line), or the --output folder of `densematch pairs`")
    common.add_model(parser, default=DEFAULT_MODEL)
    common.add_output(parser)
    parser.add_argument("--workers", type=common.positive_int, default=1,
                        help="worker processes (Ray when > 1; default 1)")
    parser.add_argument(
        "--ray-address", help="address of a running Ray cluster (default: RAY_ADDRESS or local)"
    )
    common.add_device(parser)
    common.add_num(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the dense sampling (default 0)")
    parser.add_argument("--batch-size", type=common.positive_int, default=1, help="pairs per model call (default 1)")
    parser.add_argument(
        "--cell-size", type=common.positive_int, default=4, help="dense: one keypoint per cell of this many px"
    )
    parser.add_argument(
        "--max-error", type=float, default=2.0, help="dense: max px from a match to its keypoint"
    )
    parser.add_argument(
        "--max-keypoints", type=int, default=SIFT_NUM_KEYPOINTS,
        help=f"dense: keypoints kept per image (0: all; default {SIFT_NUM_KEYPOINTS})"
    )
    parser.add_argument(
        "--checkpoint-every", type=common.positive_int, default=256, help="pairs between checkpoints (default 256)"
    )
    parser.add_argument("--overwrite", action="store_true", help="start from scratch instead of resuming")
    parser.add_argument("--strict", action="store_true",
                        help="stop at a missing or corrupt image instead of skipping it")
    common.add_quiet(parser)


def pair_list_path(text: str):
    """``--pairs``: a file, or a folder with ``pairs.txt`` (the output of ``densematch pairs``)."""
    from pathlib import Path

    from .pairs import PAIRS_FILE

    path = Path(text)
    if path.is_dir():
        path = path / PAIRS_FILE
    return common.check_input_file(path, "--pairs")


def run(args: argparse.Namespace) -> int:
    import logging

    from ..sfm.keypoints import GridConfig
    from ..sfm.matching import MatchConfig, match_collection, summarize
    from ..sfm.pairs import read_pairs
    from ..sfm.workers import MatcherSpec

    model = common.require_model(args)
    num = common.default_num(model, args.num)
    output = common.check_output_folder(args.output)
    common.check_input_folder(args.images, "IMAGES_DIR")
    pairs = read_pairs(pair_list_path(args.pairs))
    if args.max_keypoints < 0:
        raise common.ConfigError(f"--max-keypoints must be 0 (all) or positive, got {args.max_keypoints}")
    if not args.max_error > 0:
        raise common.ConfigError(f"--max-error must be positive, got {args.max_error}")
    options = common.checked_options(args, model)
    device = None if args.device == "auto" else common.resolve_device(args.device)  # auto: per worker
    common.fetch_weights(model, args.weights, options)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    spec = MatcherSpec(model, args.weights, num, args.seed, device, options=tuple(options.items()))
    config = MatchConfig(
        workers=args.workers,
        ray_address=args.ray_address,
        batch_size=args.batch_size,
        checkpoint_every=args.checkpoint_every,
        grid=GridConfig(args.cell_size, args.max_error, max_keypoints=args.max_keypoints or None),
        overwrite=args.overwrite,
        progress=not args.quiet,
        strict=args.strict,
    )
    outputs = match_collection(args.images, pairs, output, spec, config)
    summary = summarize(outputs)
    print(
        f"{summary['pairs']} pairs ({summary['new_pairs']} new, {summary['pairs_per_second']:.2f} pairs/s), "
        f"{summary['images']} images, {summary['mean_keypoints']:.0f} keypoints/image, "
        f"{summary['mean_matches']:.0f} matches/pair -> {outputs.features}, {outputs.matches}"
    )
    if outputs.skipped_images:
        print(f"skipped {len(outputs.skipped_images)} unreadable image(s) and their "
              f"{outputs.num_skipped_pairs} pair(s) (--strict stops instead):")
        for name, reason in sorted(outputs.skipped_images.items()):
            print(f"  {name}: {reason}")
    return 0
