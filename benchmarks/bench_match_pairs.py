"""Throughput of many-pair matching and the quality of the resulting COLMAP model.

Prints, for each worker count: pairs/s of ``match_collection`` (fresh output folder each time),
whether the files are identical to the single-worker run, then the COLMAP reconstruction summary
(registered images, 3D points, mean reprojection error) and the speed of dense-match snapping.

    PYTHONPATH=. python benchmarks/bench_match_pairs.py                      # SIFT, multiview_sacre_coeur
    PYTHONPATH=. python benchmarks/bench_match_pairs.py --workers 1 2 --side 640
    PYTHONPATH=. python benchmarks/bench_match_pairs.py --matcher tiny_roma_v1_outdoor --weights tiny.pth

Numbers depend on the machine and its load; see benchmarks/README_sfm.md for recorded runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from densematch.matchers.base import Matches
from densematch.sfm.colmap import ReconstructionConfig, reconstruct
from densematch.sfm.keypoints import DenseKeypointAggregator, GridConfig
from densematch.sfm.matching import MatchConfig, match_collection, summarize
from densematch.sfm.pairs import list_images, pairs_exhaustive
from densematch.sfm.workers import MatcherSpec

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "multiview_sacre_coeur" / "images"


def _downscale(source: Path, target: Path, side: int) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in list_images(source):
        image = Image.open(source / name)
        scale = min(1.0, side / max(image.size))
        size = (round(image.width * scale), round(image.height * scale))
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        image.resize(size, Image.Resampling.BOX).save(target / name, quality=95)
    return target


def _datasets(path: Path) -> dict:
    import h5py

    found = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found[name] = obj[()].tobytes()

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    return found


def bench_matching(
    images: Path, spec: MatcherSpec, workers: list[int], batch_size: int, scratch: Path
) -> Path:
    pairs = pairs_exhaustive(list_images(images))
    print(f"{len(pairs)} pairs of {len(list_images(images))} images, matcher {spec.name}, num {spec.num}")
    first = None
    for count in workers:
        out = scratch / f"workers{count}"
        config = MatchConfig(workers=count, batch_size=batch_size, progress=False, overwrite=True)
        start = time.perf_counter()
        outputs = match_collection(images, pairs, out, spec, config)
        total = time.perf_counter() - start
        summary = summarize(outputs)
        same = ""
        if first is None:
            first = out
        else:
            same = "identical to 1 worker: " + str(
                all(_datasets(first / n) == _datasets(out / n) for n in ("features.h5", "matches.h5"))
            )
        print(
            f"  workers {count}: {summary['pairs_per_second']:.2f} pairs/s while matching, "
            f"{len(pairs) / total:.2f} pairs/s end to end ({total:.1f} s incl. start-up), "
            f"{summary['mean_keypoints']:.0f} keypoints/image, {summary['mean_matches']:.0f} matches/pair"
            f"  {same}"
        )
    return first


def bench_reconstruction(match_dir: Path, images: Path, scratch: Path) -> None:
    summary = reconstruct(match_dir, images, scratch / "sfm", ReconstructionConfig())
    print(
        f"  COLMAP: {summary.num_registered_images}/{summary.num_input_images} images registered, "
        f"{summary.num_points3D} points, mean reprojection error "
        f"{summary.mean_reprojection_error or float('nan'):.3f} px, track length "
        f"{summary.mean_track_length or float('nan'):.2f}, {summary.seconds:.1f} s"
    )


def bench_snapping(num_pairs: int = 100, matches_per_pair: int = 10_000, size=(1024, 768)) -> None:
    rng = np.random.default_rng(0)
    names = [f"{i}.jpg" for i in range(20)]
    pairs = [(names[rng.integers(20)], names[rng.integers(20)]) for _ in range(num_pairs)]
    raw = [
        Matches(
            rng.uniform(0, size[0] - 1, (matches_per_pair, 2)),
            rng.uniform(0, size[1] - 1, (matches_per_pair, 2)),
            rng.uniform(0.1, 1, matches_per_pair),
            size,
            size,
        )
        for _ in pairs
    ]
    start = time.perf_counter()
    aggregator = DenseKeypointAggregator(GridConfig())
    for (name0, name1), matches in zip(pairs, raw, strict=True):
        aggregator.add(name0, name1, matches)
    aggregator.features()
    for (name0, name1), matches in zip(pairs, raw, strict=True):
        aggregator.assign(name0, name1, matches)
    seconds = time.perf_counter() - start
    print(
        f"  snapping: {num_pairs / seconds:.1f} pairs/s "
        f"({num_pairs * matches_per_pair / seconds / 1e6:.2f} M matches/s) "
        f"for {matches_per_pair} matches per pair on {size[0]}x{size[1]} images"
    )


def snapping_study(views: int = 6, samples: int = 5000, noise: float = 0.5, size=(320, 240)) -> None:
    """Keypoints shared across pairs vs. matches kept, for several grids (views of a plane, known H)."""
    import itertools

    import cv2

    rng = np.random.default_rng(1)
    corners = np.float32([[0, 0], [size[0] - 1, 0], [size[0] - 1, size[1] - 1], [0, size[1] - 1]])
    H = [
        cv2.getPerspectiveTransform(
            corners, corners + rng.uniform(-0.05, 0.05, (4, 2)).astype(np.float32) * np.float32(size)
        ).astype(np.float64)
        for _ in range(views)
    ]

    def warp(M, uv):
        xyz = np.c_[uv, np.ones(len(uv))] @ M.T
        return xyz[:, :2] / xyz[:, 2:]

    raw = {}
    for a, b in itertools.combinations(range(views), 2):
        uv0 = rng.uniform(-0.5, np.array(size) - 0.5, (samples, 2))
        uv1 = warp(H[b] @ np.linalg.inv(H[a]), uv0) + rng.normal(scale=noise, size=(samples, 2))
        keep = (uv1 >= -0.5).all(1) & (uv1 < np.array(size) - 0.5).all(1)
        raw[a, b] = Matches(uv0[keep], uv1[keep], rng.uniform(0.2, 1, keep.sum()), size, size)
    print(f"  snapping study: {views} views {size[0]}x{size[1]}, {samples} samples/pair, {noise} px noise")
    print("  cell  max_err  keypoints/img  matches/pair  median err  3-view tracks  closing")
    for cell, error in ((1, 1), (2, 1), (4, 1), (4, 2), (6, 2), (8, 2)):
        aggregator = DenseKeypointAggregator(GridConfig(cell, error, max_keypoints=None))
        for (a, b), matches in raw.items():
            aggregator.add(str(a), str(b), matches)
        features = aggregator.features()
        result = {pair: aggregator.assign(str(pair[0]), str(pair[1]), m).matches0 for pair, m in raw.items()}
        errors = []
        for (a, b), m0 in result.items():
            i0 = np.flatnonzero(m0 >= 0)
            kp0, kp1 = features[str(a)].keypoints[i0], features[str(b)].keypoints[m0[i0]]
            errors.append(
                np.linalg.norm(warp(H[b] @ np.linalg.inv(H[a]), kp0.astype(np.float64)) - kp1, axis=1)
            )
        chains = closed = 0
        for a, b, c in itertools.combinations(range(views), 3):
            ab, ac, bc = result[a, b], result[a, c], result[b, c]
            i = np.flatnonzero((ab >= 0) & (ac >= 0))
            i = i[bc[ab[i]] >= 0]
            chains += len(i)
            closed += int((bc[ab[i]] == ac[i]).sum())
        print(
            f"  {cell:4d}  {error:7.1f}  {len(features['0'].keypoints):13d}  "
            f"{np.mean([(m >= 0).sum() for m in result.values()]):12.0f}  "
            f"{np.median(np.concatenate(errors)):10.2f}  {chains:13d}  {closed / max(chains, 1):7.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--matcher", default="sift")
    parser.add_argument("--weights")
    parser.add_argument("--num", type=int, default=None, help="default: 8192 for sift, 5000 otherwise")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument(
        "--side", type=int, default=0, help="downscale images to this longer side first (0: no)"
    )
    parser.add_argument("--no-colmap", action="store_true")
    parser.add_argument("--snapping-only", action="store_true", help="only the CPU snapping benchmarks")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.images.is_dir():
        print(f"image folder not found: {args.images}", file=sys.stderr)
        return 2
    print(
        f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}, "
        f"cuda: {torch.cuda.is_available()}"
    )
    if args.snapping_only:
        bench_snapping()
        snapping_study()
        return 0
    num = args.num or (8192 if args.matcher == "sift" else 5000)
    spec = MatcherSpec(args.matcher, weights=args.weights, num=num)
    scratch = Path(tempfile.mkdtemp(prefix="bench_match_pairs."))
    try:
        images = _downscale(args.images, scratch / "images", args.side) if args.side else args.images
        first = bench_matching(images, spec, args.workers, args.batch_size, scratch)
        if not args.no_colmap:
            bench_reconstruction(first, images, scratch)
        bench_snapping()
        snapping_study()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
