"""``densematch match-pairs --model sift`` vs the plain OpenCV script, as whole processes.

    PYTHONPATH=. python benchmarks/bench_sift_pairs.py [--images DIR] [--runs 3]

45 exhaustive pairs of ``../shared/data/multiview_sacre_coeur`` (full size, 8192 keypoints), 1 worker.
The reference is ``plain_sift_pairs.py`` (SIFT once per image, ``BFMatcher.knnMatch`` + ratio 0.8 per
pair). Two settings: plain SIFT + ratio test, and the SfM default of match-pairs (RootSIFT + mutual
check, the plain script with ``--root-sift --mutual``). Runs alternate (plain, ours, plain, ...);
the minimum wall time of each is reported, start-up included; the matches of both are compared.
A final ``RESULT {json}`` line is for ``bench_all.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DENSEMATCH_SHARED", REPO.parent / "shared"))
SETTINGS = {"sift+ratio": ([], ["root_sift=false", "mutual=false"]),
            "rootsift+mutual+ratio (SfM default)": (["--root-sift", "--mutual"], [])}


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - start


def _identical(plain_npz: Path, out: Path) -> tuple[int, int]:
    """(pairs with identical matches, pairs); also requires identical keypoints."""
    plain = np.load(plain_npz)
    same = total = 0
    with h5py.File(out / "features.h5") as features, h5py.File(out / "matches.h5") as matches:
        kpts_ok = all(np.array_equal(features[n]["keypoints"][()], plain[f"kpts/{n}"]) for n in features)
        for key in plain.files:
            if key.startswith("matches/"):
                _, a, b = key.split("/")
                m0 = matches[a][b]["matches0"][()]
                ours = np.stack((np.flatnonzero(m0 >= 0), m0[m0 >= 0]), 1)
                total += 1
                same += int(kpts_ok and np.array_equal(ours, plain[key]))
    return same, total


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=SHARED / "data" / "multiview_sacre_coeur" / "images")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.images.is_dir():
        print(f"image folder not found: {args.images}; skipped")
        return []
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pairs = tmp / "pairs.txt"  # `densematch pairs --output DIR` writes DIR/pairs.txt
        subprocess.run([sys.executable, "-m", "densematch", "pairs", str(args.images), "--exhaustive",
                        "--output", str(tmp)], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
        for label, (plain_flags, our_options) in SETTINGS.items():
            plain_cmd = [sys.executable, str(REPO / "benchmarks" / "plain_sift_pairs.py"), str(args.images),
                         str(pairs), str(tmp / "plain.npz"), *plain_flags]
            ours_cmd = [sys.executable, "-m", "densematch", "match-pairs", str(args.images), "--pairs", str(pairs),
                        "--model", "sift", "--output", str(tmp / "ours"), "--overwrite", "--quiet"]
            for option in our_options:
                ours_cmd += ["--option", option]
            plain_t, ours_t = [], []
            for _ in range(args.runs):
                plain_t.append(_timed(plain_cmd))
                ours_t.append(_timed(ours_cmd))
            same, total = _identical(tmp / "plain.npz", tmp / "ours")
            result = {"target": f"match-pairs sift, {label}, {total} pairs, 1 worker", "ours_s": min(ours_t),
                      "reference": "plain OpenCV script", "ref_s": min(plain_t),
                      "ratio": min(plain_t) / min(ours_t), "identical_pairs": same,
                      "notes": f"identical matches on {same}/{total} pairs",
                      "pairs": total, "load": os.getloadavg()[0]}
            print(f"{label}: plain script min {min(plain_t):.2f} s, match-pairs min {min(ours_t):.2f} s, "
                  f"ratio {result['ratio']:.2f}x, identical matches on {same}/{total} pairs, "
                  f"load {result['load']:.1f}")
            results.append(result)
    for result in results:
        print("RESULT " + json.dumps(result))
    return results


if __name__ == "__main__":
    main()
