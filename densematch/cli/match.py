"""Match two images and write the correspondences and pictures of them.

Outputs in DIR: matches.npz (kpts0, kpts1: OpenCV pixel coordinates of each original image; certainty;
inliers of the robust fit; size0, size1 as (width, height)), matches.png (both images side by side, lines
coloured inlier/outlier after a robust fit, or by certainty with --fit none), dense.png for dense models
(image 1 warped onto image 0 and the certainty map), summary.json (counts, timings, settings).

examples:
  densematch match a.jpg b.jpg --model tiny_roma_v1_outdoor --output out/
  densematch match a.jpg b.jpg --model roma_outdoor --coarse-res 280 --upsample-res 420 --output out/
  densematch match a.jpg b.jpg --model sift --option ratio=0.9 --fit homography --output out/
"""

from __future__ import annotations

import argparse
import time

from ..registry import DEFAULT_MODEL
from . import common

HELP = "match two images with a registered model (or sift) and save matches and pictures"

FITS = ("fundamental", "homography", "none")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image0", help="first image (A)")
    parser.add_argument("image1", help="second image (B)")
    common.add_model(parser, default=DEFAULT_MODEL)
    common.add_num(parser)
    parser.add_argument("--coarse-res", type=common.positive_int, metavar="PX",
                        help="coarse resolution, multiple of 14 (RoMa models; same as --option coarse_res=PX)")
    parser.add_argument("--upsample-res", type=common.positive_int, metavar="PX",
                        help="resolution of the refinement pass (RoMa models)")
    parser.add_argument("--fit", choices=FITS, default="fundamental",
                        help="robust fit that splits the matches into inliers / outliers in the picture "
                        "(MAGSAC++, --threshold px); none: colour by certainty (default: %(default)s)")
    parser.add_argument("--threshold", type=float, default=1.0, metavar="PX",
                        help="inlier threshold of --fit in pixels (default: %(default)s)")
    common.add_device(parser)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    common.add_output(parser)
    common.add_quiet(parser, "step messages")


def robust_inliers(kpts0, kpts1, fit: str, threshold: float, seed: int):
    """Inlier mask ``(N,)`` of a MAGSAC++ fundamental matrix / homography, or None (no fit / too few)."""
    import numpy as np

    from ..geometry import RansacConfig, estimate_fundamental, estimate_homography

    if fit == "none" or len(kpts0) < 8:
        return None
    config = RansacConfig(method="opencv-magsac", threshold_px=threshold, confidence=0.999, max_iters=10000,
                          seed=seed)
    estimate = (estimate_fundamental if fit == "fundamental" else estimate_homography)(kpts0, kpts1, config)
    return np.zeros(len(kpts0), bool) if estimate is None else estimate.inliers


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from ..io import atomic_path, load_image
    from ..viz import draw_dense, draw_matches, save_rgb

    # every check before any slow work: names, values, files, weights
    model = common.require_model(args)
    num = common.default_num(model, args.num)
    if not args.threshold > 0:
        raise common.ConfigError(f"--threshold must be positive, got {args.threshold}")
    output = common.check_output_folder(args.output)
    options = common.checked_options(args, model, ("coarse_res", "upsample_res", "dinov2_weights"))
    device = common.resolve_device(args.device)
    image0, image1 = load_image(args.image0), load_image(args.image1)
    common.fetch_weights(model, args.weights, options)

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say(f"[1/3] loading {model} on {device} ...")
    start = time.perf_counter()
    matcher = common.build_matcher(args, num=num, options=options, device=device)
    t_load = time.perf_counter() - start
    say(f"      done in {t_load:.1f} s")
    say(f"[2/3] matching {args.image0} ({image0.width}x{image0.height}) <-> {args.image1} "
        f"({image1.width}x{image1.height}) ...")
    start = time.perf_counter()
    matches, field = matcher.match_pair_and_dense(image0, image1)
    t_match = time.perf_counter() - start
    inliers = robust_inliers(matches.kpts0, matches.kpts1, args.fit, args.threshold, args.seed)
    counted = "" if inliers is None else f", {int(inliers.sum())} inliers ({args.fit}, {args.threshold:g} px)"
    say(f"      {len(matches)} matches{counted} in {t_match:.2f} s")
    say(f"[3/3] writing {output} ...")
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / "matches.npz") as tmp:
        np.savez(tmp, kpts0=matches.kpts0.astype(np.float32), kpts1=matches.kpts1.astype(np.float32),
                 certainty=matches.scores.astype(np.float32), size0=np.array(matches.size0),
                 size1=np.array(matches.size1),
                 inliers=np.ones(len(matches), bool) if inliers is None else inliers)
    written = ["matches.npz", "matches.png"]
    save_rgb(output / "matches.png", draw_matches(image0, image1, matches.kpts0, matches.kpts1, matches.scores,
                                                  inliers=inliers, title=model))
    if field is not None:
        save_rgb(output / "dense.png", draw_dense(image0, image1, field.warp, field.certainty, title=model))
        written.append("dense.png")
    summary = {
        "image0": str(args.image0), "image1": str(args.image1), "model": model, "device": device, "num": num,
        "options": {k: v for k, v in options.items() if k != "dinov2_weights"},
        "num_matches": len(matches),
        "num_inliers": None if inliers is None else int(inliers.sum()),
        "fit": None if inliers is None else {"model": args.fit, "method": "opencv-magsac",
                                             "threshold_px": args.threshold},
        "seconds_load": round(t_load, 3), "seconds_match": round(t_match, 3),
        "pixel_convention": "OpenCV: centre of the top-left pixel is (0, 0)",
    }
    with atomic_path(output / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    written.append("summary.json")
    say(f"      {', '.join(written)} ({t_load + t_match:.1f} s total)")
    print(f"outputs: {args.output.resolve()}")
    return 0
