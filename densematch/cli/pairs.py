"""Write a pair list (hloc format, ``name0 name1`` per line) for an image folder into OUT/pairs.txt.

Exactly one strategy: --exhaustive (all pairs), --sequential K (each image with its K successors in
sorted-name order), or --retrieval K (each image with its K most similar images under a global
descriptor: VLAD over RootSIFT by default, needs no weights). `densematch match-pairs --pairs OUT`
reads OUT/pairs.txt.

examples:
  densematch pairs images/ --exhaustive --output run/
  densematch pairs images/ --retrieval 20 --output run/
"""

from __future__ import annotations

import argparse

from . import common

HELP = "make a pair list (exhaustive, sequential or retrieval) for an image folder"

PAIRS_FILE = "pairs.txt"  # the pair list inside --output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", metavar="IMAGES_DIR", help="folder of images (searched recursively)")
    strategy = parser.add_mutually_exclusive_group(required=True)
    strategy.add_argument("--exhaustive", action="store_true", help="every pair of images")
    strategy.add_argument("--sequential", type=common.positive_int, metavar="K",
                          help="each image with its K successors")
    strategy.add_argument("--retrieval", type=common.positive_int, metavar="K",
                          help="each image with its K nearest neighbours")
    common.add_output(parser, f"output folder; the list is written to DIR/{PAIRS_FILE}")
    parser.add_argument(
        "--quadratic",
        action="store_true",
        help="with --sequential: also pair image i with i + 2^k for 2^k > K (links distant frames)",
    )
    parser.add_argument(
        "--descriptor",
        default="sift-vlad",
        choices=("sift-vlad", "dinov2-gem"),
        help="global descriptor for --retrieval (default: sift-vlad, weight-free)",
    )
    parser.add_argument("--weights", metavar="FILE", help="weights of the global descriptor (dinov2-gem)")
    common.add_device(parser)
    common.add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from ..sfm.pairs import (
        list_images,
        pairs_exhaustive,
        pairs_from_descriptors,
        pairs_sequential,
        write_pairs,
    )

    output = common.check_output_folder(args.output)
    if output.suffix == ".txt" and not output.exists():
        raise common.ConfigError(f"--output is a folder (the list goes to DIR/{PAIRS_FILE}); got the file name "
                                 f"{output}: pass its folder instead")
    if args.weights is not None:
        if args.retrieval is None or args.descriptor != "dinov2-gem":
            raise common.ConfigError("--weights is only used by --retrieval with --descriptor dinov2-gem")
        common.check_input_file(args.weights, "--weights")
    device = common.resolve_device(args.device) if args.retrieval is not None else "cpu"
    names = list_images(args.images)
    if args.exhaustive:
        pairs = pairs_exhaustive(names)
    elif args.sequential is not None:
        pairs = pairs_sequential(names, args.sequential, quadratic=args.quadratic)
    else:
        from tqdm import tqdm

        from ..sfm.retrieval import global_descriptors

        with tqdm(total=len(names), unit="image", desc=args.descriptor, disable=args.quiet or None) as progress:
            descriptors = global_descriptors(
                args.images,
                names,
                args.descriptor,
                weights=args.weights,
                device=device,
                progress=progress,
            )
        pairs = pairs_from_descriptors(names, descriptors, args.retrieval)
    path = write_pairs(output / PAIRS_FILE, pairs)
    print(f"{len(pairs)} pairs of {len(names)} images -> {path}")
    return 0
