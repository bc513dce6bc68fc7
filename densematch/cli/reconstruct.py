"""Reconstruct a COLMAP model from OUT/features.h5 and OUT/matches.h5 (from match-pairs) with pycolmap.

Imports keypoints (+0.5 px: COLMAP puts the pixel corner at (0, 0)) and matches into a new COLMAP
database, runs geometric verification and incremental mapping, and writes the largest model into
SFM_DIR: COLMAP binary files (cameras.bin, images.bin, points3D.bin, ...), the same as text in
SFM_DIR/text/, a coloured point cloud SFM_DIR/points3D.ply, and summary.json.

example:
  densematch reconstruct run/ --images images/ --output run/sfm
"""

from __future__ import annotations

import argparse

from . import common

HELP = "COLMAP reconstruction (pycolmap) from match-pairs output"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("matches", metavar="OUT", help="output folder of densematch match-pairs")
    parser.add_argument("--images", required=True, metavar="IMAGES_DIR", help="the matched image folder")
    common.add_output(parser, "folder for the model (binary, text/, points3D.ply) and summary.json")
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
    parser.add_argument("--threads", type=int, default=-1,
                        help="COLMAP threads (default -1: all cores; 1: repeatable)")
    parser.add_argument("--verbose", action="store_true", help="show COLMAP's log")
    common.add_quiet(parser, "progress bar")


def run(args: argparse.Namespace) -> int:
    from ..sfm.colmap import PLY_FILE, SUMMARY_FILE, TEXT_DIR, ReconstructionConfig, check_camera, reconstruct

    output = common.check_output_folder(args.output)
    common.check_input_folder(args.matches, "OUT")
    common.check_input_folder(args.images, "--images")
    if args.pairs is not None:
        common.check_input_file(args.pairs, "--pairs")
    check_camera(args.camera_model, args.camera_params)
    try:
        config = ReconstructionConfig(
            camera_mode=args.camera_mode,
            camera_model=args.camera_model,
            camera_params=args.camera_params,
            refine_intrinsics=not args.fix_intrinsics,
            min_match_score=args.min_match_score,
            seed=args.seed,
            num_threads=args.threads,
            verbose=args.verbose,
            progress=not args.quiet,
        )
    except ValueError as exc:
        raise common.ConfigError(str(exc)) from None
    summary = reconstruct(args.matches, args.images, output, config, pairs=args.pairs)
    if summary.num_registered_images == 0:
        print(f"densematch reconstruct: COLMAP reconstructed no model from {summary.num_verified_pairs} verified "
              f"pairs (see {output / SUMMARY_FILE})")
        return 1
    print(f"registered {summary.num_registered_images} of {summary.num_input_images} images, "
          f"{summary.num_points3D} points, mean track length {summary.mean_track_length:.2f}, "
          f"mean reprojection error {summary.mean_reprojection_error:.3f} px "
          f"({summary.num_models} model(s), {summary.seconds:.1f} s)")
    print(f"wrote {output}: COLMAP binary model, {TEXT_DIR}/ (text), {PLY_FILE}, {SUMMARY_FILE}")
    return 0
