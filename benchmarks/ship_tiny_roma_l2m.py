"""Turn a ``densematch train tiny_roma_l2m`` run into the checkpoint embedded in the package.

Casts the floating-point tensors of OUTPUT/last.pth to fp16 (the model loads them back as fp32),
writes densematch/weights_data/tiny_roma_l2m.pth, prints its sha256 (for the registry entry) and how far
the fp16 weights move the output of a real pair against the fp32 ones.

    PYTHONPATH=. python benchmarks/ship_tiny_roma_l2m.py /work/tinyl2m_data/run256
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "densematch" / "weights_data" / "tiny_roma_l2m.pth"
DEMO = REPO.parent / "shared" / "data" / "demo_pairs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="training output folder (with last.pth)")
    parser.add_argument("--fp32", action="store_true", help="keep fp32 (when fp16 changes the output)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from densematch.models.roma.tiny_l2m import tiny_roma_l2m

    state = torch.load(args.run / "last.pth", map_location="cpu", weights_only=True)
    half = {k: v.half() if v.is_floating_point() and not args.fp32 else v for k, v in state.items()}
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    torch.save(half, TARGET)
    digest = hashlib.sha256(TARGET.read_bytes()).hexdigest()
    print(f"wrote {TARGET} ({TARGET.stat().st_size / 2**20:.2f} MiB), sha256 {digest}")
    pair = [DEMO / "roma_sacre_coeur_A.jpg", DEMO / "roma_sacre_coeur_B.jpg"]
    if all(p.is_file() for p in pair):
        outputs = []
        for weights in (state, half):
            model = tiny_roma_l2m(weights=weights)
            with torch.inference_mode():
                outputs.append(model.match(*map(str, pair)))
        (w32, c32), (w16, c16) = outputs
        height, width = w32.shape[1:3]
        moved = (w32[..., 2:] - w16[..., 2:]).abs() * torch.tensor([width, height]) / 2  # in pixels of B
        print(f"fp16 vs fp32 on the Sacre-Coeur demo pair: warp moves median {moved.median():.4f} px, "
              f"99th pct {moved.flatten().quantile(0.99):.4f} px; certainty max diff {(c32 - c16).abs().max():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
