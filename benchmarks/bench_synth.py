"""Throughput of the L2M data engine: pairs per second at 512x512 (CPU, and GPU when available).

Runs the full pipeline of ``densematch synth`` (procedural depth, lift, rasterise, holes, Telea inpainting,
relighting, writing the pair files) on generated 640x480 images, and reports per-stage timings.

    PYTHONPATH=. python benchmarks/bench_synth.py [--pairs 12] [--workers 1 2] [--resolution 512] [--repeat 3]

Each worker process uses one torch thread. Besides pairs/s (wall clock, sensitive to other load on the
machine), the CPU time per pair of the main process is printed (meaningful for ``--workers 1``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from densematch.synth import engine as engine_module
from densematch.synth.engine import SynthConfig, SynthEngine
from densematch.synth.folder import run_folder
from densematch.synth.prior import ProceduralDepth


def make_images(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        texture = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
        image = cv2.resize(texture, (640, 480), interpolation=cv2.INTER_CUBIC)
        image = cv2.GaussianBlur(image, (0, 0), 1.0) + rng.integers(0, 20, (480, 640, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"bench{i:03d}.jpg"), image)


class StageTimer:
    """Wraps engine functions to accumulate their wall time."""

    def __init__(self, names):
        self.totals = dict.fromkeys(names, 0.0)
        self._originals = {}

    def __enter__(self):
        for name in self.totals:
            original = getattr(engine_module, name)
            self._originals[name] = original

            def timed(*args, _original=original, _name=name, **kwargs):
                start = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.totals[_name] += time.perf_counter() - start

            setattr(engine_module, name, timed)
        return self

    def __exit__(self, *exc):
        for name, original in self._originals.items():
            setattr(engine_module, name, original)


def measure(images: Path, config: SynthConfig, repeat_dir: Path, workers: int) -> tuple[float, float, dict]:
    engine = SynthEngine(config, ProceduralDepth())
    run_folder(engine, sorted(images.iterdir())[:1], repeat_dir / "warmup", progress=False)
    stages = ("lift_depth", "render_novel_view", "covisible_mask", "relight", "sample_relative_pose")
    with StageTimer(stages) as timer:
        wall = time.perf_counter()
        cpu = time.process_time()
        summary = run_folder(engine, images, repeat_dir / "run", progress=False, workers=workers)
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    return summary.written / wall, cpu / max(summary.written, 1), timer.totals | {"pairs": summary.written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=12, help="pairs per measurement (one per image)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument(
        "--repeat", type=int, default=1, help="report the best of this many runs (noisy machines)"
    )
    args = parser.parse_args()
    base = SynthConfig(resolution=args.resolution, pairs_per_image=1, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = tmp / "images"
        images.mkdir()
        make_images(images, args.pairs)
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        print(f"{args.pairs} pairs at {args.resolution}x{args.resolution}, torch {torch.__version__}")
        for device in devices:
            torch.set_num_threads(1)
            for workers in args.workers if device == "cpu" else [1]:
                for label, config in (
                    ("full (Telea inpainting + relighting)", base),
                    ("no inpainting, no relighting", replace(base, inpaint=False, relight=None)),
                ):
                    config = replace(config, device=device)
                    runs = []
                    for attempt in range(args.repeat):
                        run = tmp / f"{device}-{workers}-{len(label)}-{attempt}"
                        runs.append(measure(images, config, run, workers))
                    rate, cpu_per_pair, stages = max(runs, key=lambda result: result[0])
                    line = f"{device:4s} workers={workers} {label:38s} {rate:5.2f} pairs/s"
                    if workers == 1:  # the stages run in this process only without worker processes
                        per_pair = {
                            k: f"{1000 * v / stages['pairs']:.0f}" for k, v in stages.items() if k != "pairs"
                        }
                        line += f" (CPU time {1000 * cpu_per_pair:.0f} ms/pair); stages ms/pair: {per_pair}"
                    print(line)


if __name__ == "__main__":
    main()
