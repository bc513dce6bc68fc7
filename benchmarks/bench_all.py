"""One table of every speed target against its reference, measured in this run.

    PYTHONPATH=. python benchmarks/bench_all.py [--quick]

Runs each speed benchmark (RoMa ``match()``, ``sample()``, Tiny RoMa, match-pairs with SIFT and
with RoMa / Tiny RoMa (encoder once per image vs per pair), S2LD,
IMAMatch, XFeat / XFeat*), each in its own process and each measuring ours and its reference in that same
run, collects their ``RESULT {json}`` lines and prints one table: target, reference and its seconds, ours,
ratio (reference / ours), peak memory of both where measured, date, load average at the end of the
measurement. A benchmark whose reference venv cannot be built is reported as failed with the reason. No
GPU rows are measured without a GPU (``bench_roma.py --device cuda ...`` when there is one).

``--quick``: one run per benchmark (fewer repeats), for a rough table.
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
# (script, arguments, arguments with --quick)
SCRIPTS = [
    ("bench_roma.py", ["--runs", "2", "--rounds", "2", "--sample", "0"],
     ["--runs", "1", "--rounds", "1", "--sample", "0"]),
    ("bench_sample.py", ["--runs", "2"], ["--runs", "1"]),
    ("bench_tiny.py", ["--sizes", "480x640", "--repeats", "5", "--threads", "1"],
     ["--sizes", "480x640", "--repeats", "2", "--threads", "1"]),
    ("bench_sift_pairs.py", ["--runs", "2"], ["--runs", "1"]),
    ("bench_dense_pairs.py", ["--rounds", "2"], ["--rounds", "1"]),
    ("bench_semidense.py", ["s2ld", "--repeats", "3"], ["s2ld", "--repeats", "1"]),
    ("bench_imamatch.py", ["--runs", "1"], ["--runs", "1"]),
    ("xfeat_speed.py", ["--repeats", "5"], ["--repeats", "2"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run per benchmark")
    args = parser.parse_args(argv)
    rows = []
    for script, full, quick in SCRIPTS:
        path = HERE / script
        if not path.is_file():
            rows.append({"target": f"{script}: not present, skipped"})
            continue
        extra = quick if args.quick else full
        print(f"running {script} {' '.join(extra)} ...", file=sys.stderr, flush=True)
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
    print("| target | reference | reference s | ours s | ratio | peak MiB ref / ours | notes | date | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        ref, ours, ratio = (row.get(k) for k in ("ref_s", "ours_s", "ratio"))
        fmt = lambda v, spec: "n/a" if v is None else format(v, spec)
        peak = (f"{row['ref_peak_mib']:.0f} / {row['ours_peak_mib']:.0f}" if "ref_peak_mib" in row else "")
        print(f"| {row['target']} | {row.get('reference', '')} | {fmt(ref, '.2f')} | {fmt(ours, '.2f')} | "
              f"{fmt(ratio, '.2f')}x | {peak} | {row.get('notes', '')} | {date} | {fmt(row.get('load'), '.1f')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
