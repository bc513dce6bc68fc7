"""``sample(warp, certainty, num=10000)`` speed: densematch vs upstream romatch 0.1.2 on the same warp.

    PYTHONPATH=. python benchmarks/bench_sample.py [--runs 2] [--num 10000] [--threads 2]

The warp is a RoMa-shaped symmetric output at upsample 420 (``(420, 840, 4)`` and ``(420, 840)``
certainty): a homography-like flow with certainties that vary smoothly and vanish outside the overlap
(the trained model is not needed to time sampling, only the shape and spread of its output). Both
implementations use RoMa's defaults (``threshold_balanced``, threshold 0.05, 4x candidates, KDE std 0.1).
Upstream's ``RegressionMatcher.sample`` is called unbound on an object carrying its two settings, in the
reference venv; each run is one fresh call, ours and upstream alternate, the minimum is reported.
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

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DENSEMATCH_SHARED", REPO.parent / "shared"))

UPSTREAM = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
from romatch.models.matcher import RegressionMatcher
class Settings: sample_mode, sample_thresh = "threshold_balanced", 0.05
data = torch.load(sys.argv[1], weights_only=True)
start = time.perf_counter()
m, c = RegressionMatcher.sample(Settings(), data["warp"], data["certainty"], int(sys.argv[3]))
print("SECONDS", time.perf_counter() - start, len(m))
"""


def synthetic_warp(height: int = 420, width: int = 420, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A symmetric RoMa-style output ``(H, 2W, 4)``, ``(H, 2W)`` of a homography-like flow."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-1 + 1 / height, 1 - 1 / height, height),
                            torch.linspace(-1 + 1 / width, 1 - 1 / width, width), indexing="ij")
    x0 = torch.stack((xs, ys), -1)
    homography = torch.tensor([[0.9, 0.1, 0.2], [-0.05, 1.0, 0.1], [0.1, 0.05, 1.0]])
    p = torch.cat((x0, torch.ones(height, width, 1)), -1) @ homography.T
    x1 = p[..., :2] / p[..., 2:] + 0.005 * torch.randn(height, width, 2, generator=g)
    certainty = (x1.abs() < 1).all(-1).float() * (0.5 + 0.5 * torch.sin(6 * xs) * torch.cos(4 * ys)).clamp(0, 1)
    certainty = certainty * (torch.rand(height, width, generator=g) < 0.7)
    warp = torch.cat((x0, x1), -1)
    return torch.cat((warp, warp[..., [2, 3, 0, 1]]), 1), torch.cat((certainty, certainty), 1)


def oracle_python() -> str | None:
    script = SHARED / "tools" / "romatch-oracle.sh"
    cmd = ["bash", str(script)] + ([os.environ["ROMATCH_ORACLE"]] if os.environ.get("ROMATCH_ORACLE") else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--num", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from densematch.sampling import balanced_sample

    torch.set_num_threads(args.threads)
    warp, certainty = synthetic_warp()
    python = oracle_python()
    ours, ref = [], []
    with tempfile.TemporaryDirectory() as tmp:
        torch.save({"warp": warp, "certainty": certainty}, f"{tmp}/warp.pt")
        for _ in range(args.runs):
            start = time.perf_counter()
            m, _ = balanced_sample(warp, certainty, args.num)
            ours.append(time.perf_counter() - start)
            if python:
                done = subprocess.run([python, "-c", UPSTREAM, f"{tmp}/warp.pt", str(args.threads), str(args.num)],
                                      capture_output=True, text=True)
                line = [x for x in done.stdout.splitlines() if x.startswith("SECONDS")]
                if line:
                    ref.append(float(line[-1].split()[1]))
                else:
                    print("upstream failed:", done.stderr[-1000:])
            print(f"run: ours {ours[-1]:.2f} s ({len(m)} matches)" + (f", upstream {ref[-1]:.2f} s" if ref else ""))
    result = {"target": f"sample(num={args.num}), {args.threads} threads", "ours_s": min(ours),
              "reference": "romatch 0.1.2", "ref_s": min(ref) if ref else None, "load": os.getloadavg()[0]}
    if ref:
        result["ratio"] = result["ref_s"] / result["ours_s"]
    print(f"sample(num={args.num}): ours min {min(ours):.2f} s, upstream min "
          f"{(f'{min(ref):.2f} s' if ref else 'n/a')}, ratio {result.get('ratio', float('nan')):.1f}x, "
          f"load {result['load']:.1f}")
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
