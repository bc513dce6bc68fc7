"""Semi-dense matchers on CPU: forward pairs/s, densematch vs the reference code, in the same run.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/bench_semidense.py s2ld [--size 640x480] [--repeats 3] [--threads 2]

Each implementation runs in its own fresh process on the same random weights (upstream initialisation,
saved by the reference) and the same grey image pair (a real ScanNet pair from ../shared/data resized with
cv2): one untimed warm-up forward, then ``--repeats`` timed ones under ``torch.inference_mode``. The coarse
threshold is 0 so that random weights produce matches and the fine stage does its full work. The reference
runs under the semi-dense oracle venv (shared/tools/semidense-oracle.sh, or ``--oracle PYTHON``). The
minimum time is the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DENSEMATCH_SHARED", REPO.parent / "shared"))
PAIR = ("scannet_superglue/images/scene0711_00_frame-001680.jpg",
        "scannet_superglue/images/scene0711_00_frame-001995.jpg")


def _time(forward, repeats: int) -> tuple[list[float], int]:
    import torch

    with torch.inference_mode():
        out = forward()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = forward()
            times.append(time.perf_counter() - start)
    return times, int(out["mkpts0_f"].shape[0])


def _s2ld_ours(spec: dict, repeats: int):
    from densematch.models.s2ld import s2ld

    model = s2ld(weights=spec["weights"], coarse_threshold=0.0)
    return _time(lambda: model(spec["image0"], spec["image1"]), repeats)


def _s2ld_reference(spec: dict, repeats: int):
    sys.path.insert(0, str(SHARED / "oracles"))
    import torch
    from run_s2ld import build_model, strip_matcher_prefix  # the oracle driver's upstream builder

    model, _ = build_model("megadepth", thr=0.0)
    model.load_state_dict(strip_matcher_prefix(torch.load(spec["weights"], weights_only=True)), strict=True)
    model.eval()

    def forward():
        data = {"image0": spec["image0"], "image1": spec["image1"]}
        model(data)
        return data

    return _time(forward, repeats)


WORKERS = {("s2ld", "ours"): _s2ld_ours, ("s2ld", "reference"): _s2ld_reference}


def _worker(model: str, side: str, spec_path: str, out_path: str, repeats: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    spec = torch.load(spec_path, weights_only=True)
    times, matches = WORKERS[model, side](spec, repeats)
    Path(out_path).write_text(json.dumps({"times": times, "matches": matches}))


def _oracle_python(given: str | None) -> str:
    if given:
        return given
    done = subprocess.run(["bash", str(SHARED / "tools" / "semidense-oracle.sh")], capture_output=True, text=True,
                          check=True)
    return done.stdout.strip().splitlines()[-1]


def _prepare(model: str, size: tuple[int, int], tmp: Path, oracle: str) -> Path:
    import cv2
    import torch

    images = []
    for rel in PAIR:
        grey = cv2.resize(cv2.imread(str(SHARED / "data" / rel), cv2.IMREAD_GRAYSCALE), size)
        images.append(torch.from_numpy(grey).float()[None, None] / 255.0)
    weights = tmp / "weights.pth"
    # the reference driver initialises (upstream init, seed 0) and saves the weights
    subprocess.run([oracle, str(SHARED / "oracles" / f"run_{model}.py"), "--seed", "0", "--image0",
                    str(SHARED / "data" / PAIR[0]), "--image1", str(SHARED / "data" / PAIR[1]), "--resize", "64", "64",
                    "--out", str(tmp / "init.npz"), "--save-weights", str(weights)], check=True, capture_output=True)
    spec = tmp / "spec.pt"
    torch.save({"image0": images[0], "image1": images[1], "weights": str(weights)}, spec)
    return spec


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted({m for m, _ in WORKERS}))
    parser.add_argument("--size", default="640x480", help="W x H of the network input")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--oracle", default=None, help="python of the semi-dense reference venv")
    parser.add_argument("--worker", nargs=4, metavar=("SIDE", "SPEC", "OUT", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        side, spec, out, _ = args.worker
        _worker(args.model, side, spec, out, args.repeats, args.threads)
        return
    size = tuple(int(v) for v in args.size.lower().split("x"))
    oracle = _oracle_python(args.oracle)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = _prepare(args.model, size, Path(tmp), oracle)
        for side, python in (("ours", sys.executable), ("reference", oracle)):
            out = Path(tmp) / f"{side}.json"
            env = {**os.environ, "PYTHONPATH": str(REPO) if side == "ours" else ""}
            cmd = [python, __file__, args.model, "--repeats", str(args.repeats), "--threads", str(args.threads),
                   "--worker", side, str(spec), str(out), args.model]
            subprocess.run(cmd, check=True, env=env)
            results[side] = json.loads(out.read_text())
    print(f"{args.model} forward on CPU at {size[0]}x{size[1]}, {args.threads} thread(s), {args.repeats} repeats")
    for side, res in results.items():
        best, median = min(res["times"]), statistics.median(res["times"])
        print(f"  {side:9s}: min {best:6.2f} s  median {median:6.2f} s  -> {1 / best:.3f} pairs/s  "
              f"({res['matches']} matches)")
    ratio = min(results["reference"]["times"]) / min(results["ours"]["times"])
    print(f"  speed ratio ours / reference (min times): {ratio:.2f}x")
    ours, ref = min(results["ours"]["times"]), min(results["reference"]["times"])
    print("RESULT " + json.dumps({  # for bench_all.py
        "target": f"{args.model} forward {size[0]}x{size[1]}, {args.threads} thread(s) (`bench_semidense.py`)",
        "reference": "upstream (shared/oracles)", "ref_s": ref, "ours_s": ours, "ratio": ref / ours,
        "load": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
