"""Many-pair matching with the learned matchers: each image encoded once vs once per pair.

    PYTHONPATH=. python benchmarks/bench_dense_pairs.py                    # RoMa 280/420, Tiny RoMa, S2LD
    PYTHONPATH=. python benchmarks/bench_dense_pairs.py --images 6 --models tiny

``match-pairs`` sees each of N images in N-1 pairs. RoMa, Tiny RoMa and S2LD split their work into
``extract`` (per image: RoMa's resized network inputs and DINOv2 map, Tiny RoMa's XFeat features, S2LD's
backbone, keypoints and coarse features) and ``match_features`` (per pair); the matchers
(``DenseModelMatcher``, ``CorrespondenceMatcher``) keep the per-image part in a feature cache. This script
runs the same matcher over all pairs of the first ``--images`` images of
``shared/data/multiview_sacre_coeur`` (longer side ``--side``) with the cache (``feature_cache=16``) and
without it (``feature_cache=0``: the encoder runs for both images of every pair, as before), alternating
``--rounds`` times, and prints seconds (min over rounds), the ratio, and the largest difference between
the two runs' matches. Random weights (no published weights are reachable here): the encoders' cost does
not depend on the weights' values, but S2LD's per-pair fine stage does (random weights give few coarse
matches even at ``coarse_threshold=0``, so its ratio is an upper bound for trained weights). Each model
prints one ``RESULT {json}`` line for ``bench_all.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DENSEMATCH_SHARED", REPO.parent / "shared"))
IMAGES = SHARED / "data" / "multiview_sacre_coeur" / "images"


def _images(count: int, side: int, folder: Path) -> list[Path]:
    names = sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:count]
    if len(names) < 2:
        raise SystemExit(f"need at least 2 images in {IMAGES}")
    paths = []
    for source in names:
        image = Image.open(source).convert("RGB")
        scale = min(1.0, side / max(image.size))
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BOX)
        image.save(folder / source.name, quality=95)
        paths.append(folder / source.name)
    return paths


def _model(kind: str):
    torch.manual_seed(0)
    if kind == "s2ld":
        from densematch.models.s2ld import s2ld

        return s2ld(weights=False, resize=640, coarse_threshold=0.0), "S2LD 640 px"
    if kind == "tiny":
        from densematch.models.roma.tiny import build_tiny_roma

        return build_tiny_roma(weights=False), "Tiny RoMa v1"
    from densematch.models.roma.matcher import build_roma

    model = build_roma("cpu", matcher_weights=False, dinov2_weights=False, coarse_res=280, upsample_res=420,
                       amp_dtype=torch.float32)
    return model, "RoMa 280/420 fp32"


def _run_all(model, pairs, cache: int, num: int) -> tuple[float, list]:
    from densematch.matchers.correspondences import CorrespondenceMatcher
    from densematch.matchers.dense import DenseModelMatcher

    if getattr(model, "kind", "dense") == "matches":
        matcher = CorrespondenceMatcher(model, "bench", feature_cache=cache)
    else:
        matcher = DenseModelMatcher(model, "bench", num=num, feature_cache=cache)
    start = time.perf_counter()
    results = [matcher.match_pair(a, b) for a, b in pairs]
    return time.perf_counter() - start, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=["roma", "tiny", "s2ld"], default=["roma", "tiny", "s2ld"])
    parser.add_argument("--images", type=int, nargs="+", default=None,
                        help="images per model, in --models order (default: RoMa 4, Tiny RoMa 6, S2LD 4)")
    parser.add_argument("--side", type=int, default=640, help="longer side of the images")
    parser.add_argument("--num", type=int, default=5000, help="matches sampled per pair")
    parser.add_argument("--rounds", type=int, default=1, help="alternating cached / uncached runs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if not IMAGES.is_dir():
        print(f"skipped: {IMAGES} not found")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    counts = args.images or [{"roma": 4, "tiny": 6, "s2ld": 4}[kind] for kind in args.models]
    if len(counts) != len(args.models):
        parser.error("--images needs one count per model")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, count in zip(args.models, counts, strict=True):
            folder = Path(tmp) / kind
            folder.mkdir()
            pairs = list(combinations(_images(count, args.side, folder), 2))
            model, label = _model(kind)
            _run_all(model, pairs[:1], 0, args.num)  # warm-up
            times = {0: [], 16: []}
            outputs = {}
            for _ in range(args.rounds):
                for cache in (0, 16):
                    seconds, outputs[cache] = _run_all(model, pairs, cache, args.num)
                    times[cache].append(seconds)
            both = list(zip(outputs[0], outputs[16], strict=True))
            counts_equal = all(len(a.kpts0) == len(b.kpts0) for a, b in both)
            diff = max((float(np.abs(a.kpts0 - b.kpts0).max(initial=0) + np.abs(a.kpts1 - b.kpts1).max(initial=0))
                        for a, b in both if len(a.kpts0) == len(b.kpts0)), default=float("nan"))
            same = counts_equal and all(np.array_equal(a.kpts0, b.kpts0) and np.array_equal(a.kpts1, b.kpts1)
                                        for a, b in both)
            matches = sum(len(a.kpts0) for a, _ in both) / len(both)
            ref, ours = min(times[0]), min(times[16])
            print(f"{label}: {len(pairs)} pairs of {count} images (side {args.side}), "
                  f"encoder per pair {ref:.1f} s, once per image {ours:.1f} s, {ref / ours:.2f}x; "
                  f"{matches:.0f} matches/pair, identical: {same} (same counts: {counts_equal}, largest "
                  f"difference {diff:.2g} px)")
            print("RESULT " + json.dumps({
                "target": f"match-pairs, {label}: {len(pairs)} pairs of {count} images, encoder once per image",
                "reference": "densematch, encoder per pair", "ref_s": ref, "ours_s": ours, "ratio": ref / ours,
                "notes": f"{matches:.0f} matches/pair, identical: {same} (max diff {diff:.2g} px)",
                "load": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
