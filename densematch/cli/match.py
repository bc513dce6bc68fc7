"""Match two images and write the sampled correspondences and a picture of them.

Outputs in DIR: matches.npz (kpts0, kpts1: OpenCV pixel coordinates of each original image;
certainty; size0, size1 as (width, height)), matches.png (match lines), summary.json (timings).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..registry import DEFAULT_MODEL

HELP = "match two images with a registered model (or sift) and save the matches"


def add_arguments(parser) -> None:
    parser.add_argument("image0", help="first image (A)")
    parser.add_argument("image1", help="second image (B)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="registered model name or 'sift' (default: %(default)s, embedded, works offline)")
    parser.add_argument("--weights", help="local checkpoint instead of the published one")
    parser.add_argument("--dinov2-weights", help="local DINOv2 checkpoint (RoMa models)")
    parser.add_argument("--num", type=int, default=5000, help="matches to sample (default: %(default)s)")
    parser.add_argument("--coarse-res", type=int, help="coarse resolution, multiple of 14 (RoMa models)")
    parser.add_argument("--upsample-res", type=int, help="resolution of the refinement pass (RoMa models)")
    parser.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    parser.add_argument("--output", required=True, type=Path, help="output folder")


def run(args) -> int:
    from ..io import atomic_path, load_image
    from ..matchers import get_matcher
    from ..viz import draw_matches, save_rgb

    image0, image1 = load_image(args.image0), load_image(args.image1)  # fail early on unreadable files
    kwargs = {k: v for k, v in (("coarse_res", args.coarse_res), ("upsample_res", args.upsample_res),
                                ("dinov2_weights", args.dinov2_weights)) if v is not None}
    print(f"[1/3] loading {args.model} on {args.device} ...", flush=True)
    start = time.perf_counter()
    matcher = get_matcher(args.model, device=args.device, weights=args.weights, num=args.num, seed=args.seed,
                          **kwargs)
    t_load = time.perf_counter() - start
    print(f"      done in {t_load:.1f} s", flush=True)
    print(f"[2/3] matching {args.image0} <-> {args.image1} ...", flush=True)
    start = time.perf_counter()
    matches = matcher.match_pair(image0, image1)
    t_match = time.perf_counter() - start
    print(f"      {len(matches)} matches in {t_match:.2f} s", flush=True)
    print(f"[3/3] writing {args.output} ...", flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.output / "matches.npz") as tmp:
        np.savez(tmp, kpts0=matches.kpts0.astype(np.float32), kpts1=matches.kpts1.astype(np.float32),
                 certainty=matches.scores.astype(np.float32), size0=np.array(matches.size0),
                 size1=np.array(matches.size1))
    save_rgb(args.output / "matches.png", draw_matches(image0, image1, matches.kpts0, matches.kpts1, matches.scores))
    summary = {
        "image0": str(args.image0), "image1": str(args.image1), "model": args.model, "num_matches": len(matches),
        "seconds_load": round(t_load, 3), "seconds_match": round(t_match, 3),
        "pixel_convention": "OpenCV: centre of the top-left pixel is (0, 0)",
    }
    with atomic_path(args.output / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"      matches.npz, matches.png, summary.json ({t_load + t_match:.1f} s total)")
    print(f"outputs: {args.output.resolve()}/{{matches.npz,matches.png,summary.json}}")
    return 0
