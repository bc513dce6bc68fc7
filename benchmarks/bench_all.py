"""One table of every speed target against its reference, measured in this run.

    PYTHONPATH=. python benchmarks/bench_all.py [--quick]

Runs each benchmark script that exists (``bench_sample.py``, ``bench_sift_pairs.py``, and any
``bench_<model>_pairs.py`` of the semi-dense models when present) in its own process, collects its
``RESULT {json}`` lines and prints: target, reference seconds, ours, ratio (reference / ours), date,
load average. Missing scripts or reference venvs are reported as skipped. No GPU rows are measured
without a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [("bench_sample.py", ["--runs", "2"]), ("bench_sift_pairs.py", ["--runs", "2"]),
           ("bench_s2ld_pairs.py", []), ("bench_imamatch_pairs.py", []), ("bench_xfeat_pairs.py", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run per benchmark")
    args = parser.parse_args(argv)
    rows = []
    for script, extra in SCRIPTS:
        path = HERE / script
        if not path.is_file():
            rows.append({"target": f"{script}: not present, skipped"})
            continue
        if args.quick:
            extra = ["--runs", "1"] if "--runs" in extra else extra
        env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
        done = subprocess.run([sys.executable, str(path), *extra], capture_output=True, text=True, env=env)
        found = [json.loads(line[7:]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        rows.extend(found or [{"target": f"{script}: failed ({done.stderr.strip()[-200:]})"}])
    try:
        import torch

        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except ImportError:
        gpu = None
    if gpu is None:
        rows.append({"target": "RoMa 560/864 bf16/fp16 on GPU: not measured, no GPU"})
    date = datetime.date.today().isoformat()
    print("| target | reference s | ours s | ratio | date | load |\n|---|---|---|---|---|---|")
    for row in rows:
        ref, ours, ratio = (row.get(k) for k in ("ref_s", "ours_s", "ratio"))
        fmt = lambda v, spec: "n/a" if v is None else format(v, spec)
        print(f"| {row['target']} | {fmt(ref, '.2f')} | {fmt(ours, '.2f')} | {fmt(ratio, '.2f')}x | {date} | "
              f"{fmt(row.get('load'), '.1f')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
