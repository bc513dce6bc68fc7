"""Reconstruct a COLMAP model from OUT/features.h5 and OUT/matches.h5 (from match-pairs) with pycolmap.

Imports keypoints (+0.5 px: COLMAP puts the pixel corner at (0, 0)) and matches into a new COLMAP
database, runs geometric verification and incremental mapping, and writes the largest model
(cameras.bin, images.bin, points3D.bin, ...) and summary.json into SFM_DIR.
"""

from __future__ import annotations

import argparse

HELP = "COLMAP reconstruction (pycolmap) from match-pairs output"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("matches", metavar="OUT", help="output folder of densematch match-pairs")
    parser.add_argument("--images", required=True, metavar="IMAGES_DIR", help="the matched image folder")
    parser.add_argument(
        "--output", required=True, metavar="SFM_DIR", help="folder for the model and summary.json"
    )
    parser.add_argument("--pairs", help="import only these pairs (default: every pair in OUT/matches.h5)")
    parser.add_argument(
        "--camera-mode",
        default="auto",
        choices=("auto", "single", "per_folder", "per_image"),
        help="how images share cameras (default: auto, from image size and EXIF)",
    )
    parser.add_argument(
        "--camera-model", default="SIMPLE_RADIAL", help="COLMAP camera model (default SIMPLE_RADIAL)"
    )
    parser.add_argument(
        "--camera-params",
        metavar="P1,P2,...",
        help="known intrinsics of every camera in COLMAP's parameter order and pixel convention "
        "(the pixel corner is (0, 0): cx, cy = OpenCV's + 0.5), e.g. f,cx,cy for SIMPLE_PINHOLE",
    )
    parser.add_argument(
        "--fix-intrinsics", action="store_true", help="keep the cameras fixed (use with --camera-params)"
    )
    parser.add_argument("--min-match-score", type=float, help="drop matches scoring at or below this")
    parser.add_argument("--seed", type=int, default=0, help="RANSAC / mapper seed (default 0)")
    parser.add_argument("--threads", type=int, default=-1, help="COLMAP threads (default all; 1: repeatable)")
    parser.add_argument("--verbose", action="store_true", help="show COLMAP's log")


def run(args: argparse.Namespace) -> int:
    import json

    from ..sfm.colmap import SUMMARY_FILE, ReconstructionConfig, reconstruct

    config = ReconstructionConfig(
        camera_mode=args.camera_mode,
        camera_model=args.camera_model,
        camera_params=args.camera_params,
        refine_intrinsics=not args.fix_intrinsics,
        min_match_score=args.min_match_score,
        seed=args.seed,
        num_threads=args.threads,
        verbose=args.verbose,
    )
    summary = reconstruct(args.matches, args.images, args.output, config, pairs=args.pairs)
    keys = ("num_input_images", "num_registered_images", "num_points3D", "mean_reprojection_error")
    print(json.dumps({key: getattr(summary, key) for key in keys}))
    if summary.num_registered_images == 0:
        print(f"densematch reconstruct: COLMAP reconstructed no model (see {args.output}/{SUMMARY_FILE})")
        return 1
    return 0
