"""Tiny RoMa v1 on CPU: ``match()`` time and peak RSS, densematch vs upstream romatch 0.1.2.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/bench_tiny.py [--sizes 280x280 480x640] [--repeats 5] [--threads 1]

Both implementations run in their own fresh process with the same random weights and the same random
tensor pair per size: one untimed warm-up call, then ``--repeats`` timed calls. The median and the
minimum are printed; on a shared machine the minimum is the steadier figure.
Peak RSS is the process's high-water mark (VmHWM) during the timed calls, after resetting it through
``/proc/self/clear_refs``; "base" is the RSS just before them (torch, the model and the inputs).
Upstream runs under the reference venv's python (shared/tools/romatch-oracle.sh, or ``--oracle``).
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

import torch

REPO = Path(__file__).resolve().parents[1]
ORACLE_SCRIPT = REPO / "tests" / "oracle" / "tiny_ref.py"


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _worker(spec_path: str, out_path: str) -> None:
    """Measure densematch in this (fresh) process; same SPEC/OUT format as tests/oracle/tiny_ref.py."""
    from densematch.models.roma.tiny import build_tiny_roma

    spec = torch.load(spec_path, weights_only=True)
    torch.set_num_threads(int(spec.get("threads", 1)))
    model = build_tiny_roma(weights=spec["weights"])
    results = []
    for case in spec["cases"]:
        model.match(case["A"], case["B"])
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        rss_before = _status_mib("VmRSS")
        times = []
        for _ in range(int(spec.get("repeats", 1))):
            start = time.perf_counter()
            model.match(case["A"], case["B"])
            times.append(time.perf_counter() - start)
        results.append({"seconds": statistics.median(times), "best_seconds": min(times),
                        "peak_rss_mib": _status_mib("VmHWM"), "rss_before_mib": rss_before})
    torch.save({"results": results}, out_path)


def _oracle_python(given: str | None) -> str:
    if given:
        return given
    script = REPO.parent / "shared" / "tools" / "romatch-oracle.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def _run(command: list[str], spec: dict, tmp: Path, tag: str) -> list[dict]:
    spec_path, out_path = tmp / f"{tag}_spec.pt", tmp / f"{tag}_out.pt"
    torch.save(spec, spec_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(spec["threads"])}
    subprocess.run([*command, str(spec_path), str(out_path)], check=True, env=env)
    return torch.load(out_path, weights_only=True)["results"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["280x280", "480x640"], help="HxW of both images")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--oracle", help="python of the romatch reference venv (default: romatch-oracle.sh)")
    parser.add_argument("--worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(*args.worker)
        return 0

    from densematch.models.roma.tiny import build_tiny_roma

    torch.manual_seed(0)
    weights = build_tiny_roma(weights=False).state_dict()
    cases = []
    for size in args.sizes:
        height, width = (int(v) for v in size.lower().split("x"))
        pair = torch.rand(2, 1, 3, height, width)
        cases.append({"A": pair[0], "B": pair[1], "kind": "tensor"})
    spec = {"weights": weights, "cases": cases, "repeats": args.repeats, "threads": args.threads,
            "keep_outputs": False}
    with tempfile.TemporaryDirectory() as tmp:
        ours = _run([sys.executable, __file__, "--worker"], spec, Path(tmp), "ours")
        ref = _run([_oracle_python(args.oracle), str(ORACLE_SCRIPT)], spec, Path(tmp), "upstream")
    print(f"Tiny RoMa v1 match() on CPU, {args.threads} thread(s), median of {args.repeats}, torch "
          f"{torch.__version__}")
    print(f"{'size (HxW)':>10} | {'ours s: median':>14} {'min':>6} | {'upstream s: median':>18} {'min':>6} | "
          f"{'ours peak MiB (base)':>20} | {'upstream peak MiB (base)':>24}")
    for size, mine, theirs in zip(args.sizes, ours, ref, strict=True):
        print(f"{size:>10} | {mine['seconds']:14.3f} {mine['best_seconds']:6.3f} | "
              f"{theirs['seconds']:18.3f} {theirs['best_seconds']:6.3f} | "
              f"{mine['peak_rss_mib']:12.0f} ({mine['rss_before_mib']:4.0f}) | "
              f"{theirs['peak_rss_mib']:16.0f} ({theirs['rss_before_mib']:4.0f})")
    for size, mine, theirs in zip(args.sizes, ours, ref, strict=True):  # for bench_all.py (min of the repeats)
        print("RESULT " + json.dumps({
            "target": f"Tiny RoMa `match()` {size}, {args.threads} thread(s) (`bench_tiny.py`)",
            "reference": "romatch 0.1.2", "ref_s": theirs["best_seconds"], "ours_s": mine["best_seconds"],
            "ratio": theirs["best_seconds"] / mine["best_seconds"], "load": os.getloadavg()[0],
            "ref_peak_mib": theirs["peak_rss_mib"], "ours_peak_mib": mine["peak_rss_mib"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
