"""Write a pair list (hloc format, ``name0 name1`` per line) for an image folder.

Exactly one strategy: --exhaustive (all pairs), --sequential K (each image with its K successors in
sorted-name order), or --retrieval K (each image with its K most similar images under a global
descriptor: VLAD over RootSIFT by default, needs no weights).
"""

from __future__ import annotations

import argparse

HELP = "make a pair list (exhaustive, sequential or retrieval) for an image folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", metavar="IMAGES_DIR", help="folder of images (searched recursively)")
    strategy = parser.add_mutually_exclusive_group(required=True)
    strategy.add_argument("--exhaustive", action="store_true", help="every pair of images")
    strategy.add_argument("--sequential", type=int, metavar="K", help="each image with its K successors")
    strategy.add_argument(
        "--retrieval", type=int, metavar="K", help="each image with its K nearest neighbours"
    )
    parser.add_argument("--output", required=True, help="pair list to write (e.g. pairs.txt)")
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
    parser.add_argument("--weights", help="weights of the global descriptor (dinov2-gem)")
    parser.add_argument(
        "--device", default="cpu", help="torch device for a learned descriptor (default: cpu)"
    )


def run(args: argparse.Namespace) -> int:
    from ..sfm.pairs import (
        list_images,
        pairs_exhaustive,
        pairs_from_descriptors,
        pairs_sequential,
        write_pairs,
    )

    names = list_images(args.images)
    if args.exhaustive:
        pairs = pairs_exhaustive(names)
    elif args.sequential is not None:
        pairs = pairs_sequential(names, args.sequential, quadratic=args.quadratic)
    else:
        from tqdm import tqdm

        from ..sfm.retrieval import global_descriptors

        with tqdm(total=len(names), unit="image", desc=args.descriptor) as progress:
            descriptors = global_descriptors(
                args.images,
                names,
                args.descriptor,
                weights=args.weights,
                device=args.device,
                progress=progress,
            )
        pairs = pairs_from_descriptors(names, descriptors, args.retrieval)
    path = write_pairs(args.output, pairs)
    print(f"{len(pairs)} pairs of {len(names)} images -> {path}")
    return 0
