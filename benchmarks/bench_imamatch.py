"""IMAMatch forward speed, peak memory and match counts: densematch vs upstream (``shared/oracles/imamatch``),
same random weights, same 640x480 grey pair, with and without densification.

    python benchmarks/bench_imamatch.py                 # CPU, 640x480, 1 timed run per setting
    python benchmarks/bench_imamatch.py --size 320 256 --runs 3

Each implementation runs in its own process (upstream in the venv of shared/tools/semidense-oracle.sh), so
peak RSS (VmHWM, reset after a small warm-up call) is measured in isolation. Random weights give no matches
at the published thresholds, so the coarse threshold is 0; "densified" uses add_matches 4 with every match
below high_threshold 1.0 (4 sub-queries each), before and after the step-1 consistency check.
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

from bench_roma import _reset_peak, _vmhwm_mib  # same folder (peak RSS helpers)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DENSEMATCH_SHARED", REPO.parent / "shared"))
SETTINGS = {"plain": {"add_matches": 0, "high_thresh": 0.6}, "densified": {"add_matches": 4, "high_thresh": 1.0}}


def _grey(path: str, width: int, height: int):
    import cv2
    import torch

    image = cv2.resize(cv2.imread(path, cv2.IMREAD_GRAYSCALE), (width, height))
    return torch.from_numpy(image).float()[None, None] / 255.0


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    state = torch.load(args.weights, weights_only=True)
    kw = {"thresh": 0.0, "allow_reverse": True, "iter_optimize": True, "rplus": 1.0, **SETTINGS[args.setting]}
    if args.impl == "upstream":
        sys.path.insert(0, str(SHARED / "oracles"))
        import run_imamatch

        sys.path.insert(0, run_imamatch.ROOT)
        from models.model import Matcher

        cfg, _, _ = run_imamatch.read_upstream_config("test_megadepth.py")
        model = Matcher(cfg["model"]).eval()
        model.load_state_dict(state)

        def run(a, b):
            out = model.forward_test({"image0": a, "image1": b}, **kw)
            return out[0].shape[0], None
    else:
        sys.path.insert(0, str(REPO))
        from densematch.models.imamatch.zoo import imamatch_megadepth

        model = imamatch_megadepth(weights=state, coarse_threshold=0.0, add_matches=kw["add_matches"],
                                   high_threshold=kw["high_thresh"])

        def run(a, b):
            out = model(a, b)
            return out["query"].shape[0], out["fine_query"].shape[0]

    images = SHARED / "data" / "scannet_superglue" / "images"
    pair = [str(images / n) for n in ("scene0711_00_frame-001680.jpg", "scene0711_00_frame-001995.jpg")]
    with torch.no_grad():
        run(_grey(pair[0], 128, 96), _grey(pair[1], 128, 96))  # warm-up
        a, b = _grey(pair[0], *args.size), _grey(pair[1], *args.size)
        _reset_peak()
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            matches, queries = run(a, b)
            times.append(time.perf_counter() - start)
    print(json.dumps({"impl": args.impl, "setting": args.setting, "seconds": min(times), "peak_mib": _vmhwm_mib(),
                      "matches": matches, "fine_queries": queries}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="densematch", help=argparse.SUPPRESS)
    parser.add_argument("--setting", default="plain", help=argparse.SUPPRESS)
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import torch

    sys.path.insert(0, str(REPO))
    from densematch.models.imamatch.zoo import imamatch_megadepth

    oracle = subprocess.run(["bash", str(SHARED / "tools" / "semidense-oracle.sh")], capture_output=True, text=True)
    upstream_python = oracle.stdout.strip().splitlines()[-1] if oracle.returncode == 0 else None
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        weights = Path(tmp) / "weights.pth"
        torch.save(imamatch_megadepth(weights=False).state_dict(), weights)
        print(f"IMAMatch forward at {args.size[0]}x{args.size[1]}, CPU, {args.threads} threads, best of {args.runs}")
        for setting in SETTINGS:
            measured = {}
            for impl, python in (("densematch", sys.executable), ("upstream", upstream_python)):
                if python is None:
                    print(f"{impl:10s} {setting:9s} skipped: the reference venv cannot be built")
                    continue
                cmd = [python, __file__, "--worker", "--impl", impl, "--setting", setting, "--weights", str(weights),
                       "--size", *map(str, args.size), "--runs", str(args.runs), "--threads", str(args.threads)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{impl:10s} {setting:9s} failed: {done.stderr[-500:]}")
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                queries = "" if r["fine_queries"] is None else f", {r['fine_queries']} fine queries"
                print(f"{impl:10s} {setting:9s} {1 / r['seconds']:.4f} pairs/s ({r['seconds']:.1f} s), "
                      f"peak {r['peak_mib']:.0f} MiB, {r['matches']} matches{queries}")
                measured[impl] = r
            if len(measured) == 2:  # for bench_all.py
                ours, ref = measured["densematch"], measured["upstream"]
                print("RESULT " + json.dumps({
                    "target": f"IMAMatch forward {args.size[0]}x{args.size[1]} {setting}, {args.threads} threads "
                              "(`bench_imamatch.py`)", "reference": "upstream (shared/oracles)",
                    "ref_s": ref["seconds"], "ours_s": ours["seconds"], "ratio": ref["seconds"] / ours["seconds"],
                    "load": os.getloadavg()[0], "ref_peak_mib": ref["peak_mib"], "ours_peak_mib": ours["peak_mib"],
                    "notes": f"matches {ours['matches']} (reference {ref['matches']})"
                             + (f", {ours['fine_queries']} fine queries" if ours["fine_queries"] else "")}))


if __name__ == "__main__":
    main()
