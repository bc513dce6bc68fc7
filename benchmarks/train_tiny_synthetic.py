"""Does training learn? Tiny RoMa from scratch on synthetic pairs of real images, scored on held-out images.

Steps (each one a densematch command, so this also exercises the tools end to end):

1. split the images found under ``--images`` (default: every image of ../shared/data) by file into a
   training and a held-out set (symlinks under OUT/images_{train,eval});
2. ``densematch synth`` makes synthetic pairs with dense ground truth from each set;
3. ``densematch train tiny_roma_v1_outdoor --steps 0`` writes the initial (random) model, then the same
   with ``--steps N`` trains it on the training pairs;
4. ``densematch benchmark`` scores both checkpoints on the held-out pairs (dense PCK@1/3/5 px);
5. prints a table and writes OUT/summary.json.

Example (CPU, a few hundred steps)::

    PYTHONPATH=. python benchmarks/train_tiny_synthetic.py --output /tmp/tiny_synth --steps 300 \\
        --batch-size 4 --resolution 256

On a GPU, add ``--device cuda`` and raise ``--steps`` / ``--batch-size`` / ``--pairs-per-image``.
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
SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".pgm")
MODEL = "tiny_roma_v1_outdoor"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", action="append", default=None, help="image folder(s) (default: ../shared/data)"
    )
    parser.add_argument("--output", required=True, help="work folder (outside the repository)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--resolution", type=int, default=256, help="synthetic and training size (multiple of 32)"
    )
    parser.add_argument("--pairs-per-image", type=int, default=4, help="training pairs per training image")
    parser.add_argument("--eval-pairs-per-image", type=int, default=1)
    parser.add_argument("--eval-every", type=int, default=4, help="every k-th image (sorted) is held out")
    parser.add_argument("--lr", type=float, default=None, help="default: published 1e-4 x batch / 8")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    return parser.parse_args()


def densematch(*args: str, threads: int) -> None:
    """Run one densematch command, failing loudly."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "densematch", *args]
    print("$ densematch " + " ".join(args), flush=True)
    subprocess.run(command, env=env, check=True)


def split_images(folders: list[Path], out: Path, every: int) -> tuple[Path, Path]:
    """Symlink every ``every``-th image into OUT/images_eval and the rest into OUT/images_train."""
    files = sorted(p for folder in folders for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    if len(files) < 2 * every:
        raise SystemExit(f"need at least {2 * every} images, found {len(files)} under {folders}")
    train_dir, eval_dir = out / "images_train", out / "images_eval"
    for index, path in enumerate(files):
        target = (eval_dir if index % every == every - 1 else train_dir) / f"{index:04d}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(path.resolve())
    return train_dir, eval_dir


def dense_pck(bench: Path) -> dict:
    summary = json.loads((bench / "summary.json").read_text())
    return {k: v for k, v in _flatten(summary).items() if "pck@" in k}


def _flatten(values, prefix: str = "") -> dict:
    if not isinstance(values, dict):
        return {prefix: values}
    out = {}
    for key, value in values.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
    return out


def main() -> int:
    args = parse_args()
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    folders = [Path(p) for p in args.images] if args.images else [REPO.parent / "shared" / "data"]
    train_images, eval_images = split_images(folders, out, args.eval_every)
    common = ["--resolution", str(args.resolution), "--device", args.device]
    densematch(
        "synth",
        str(train_images),
        "--output",
        str(out / "pairs_train"),
        "--pairs-per-image",
        str(args.pairs_per_image),
        "--seed",
        "0",
        *common,
        threads=args.threads,
    )
    densematch(
        "synth",
        str(eval_images),
        "--output",
        str(out / "pairs_eval"),
        "--pairs-per-image",
        str(args.eval_pairs_per_image),
        "--seed",
        "1",
        *common,
        threads=args.threads,
    )
    train_common = [
        MODEL,
        "--data",
        f"synthetic:{out / 'pairs_train'}",
        "--batch-size",
        str(args.batch_size),
        "--resolution",
        str(args.resolution),
        "--device",
        args.device,
        "--workers",
        str(args.workers),
        "--log-every",
        "10",
        "--checkpoint-every",
        "100",
    ]
    if args.lr is not None:
        train_common += ["--lr", str(args.lr)]
    runs = {"initial": out / "initial", "trained": out / "trained"}
    started = time.perf_counter()
    if not (runs["initial"] / "last.pth").exists():
        densematch(
            "train", *train_common, "--steps", "0", "--output", str(runs["initial"]), threads=args.threads
        )
    resume = ["--resume"] if (runs["trained"] / "checkpoint.pth").exists() else []
    densematch(
        "train",
        *train_common,
        "--steps",
        str(args.steps),
        "--output",
        str(runs["trained"]),
        *resume,
        threads=args.threads,
    )
    train_seconds = time.perf_counter() - started
    results = {}
    for name, run in runs.items():
        bench = out / f"bench_{name}"
        densematch(
            "benchmark",
            str(out / "pairs_eval"),
            "--matcher",
            MODEL,
            "--weights",
            str(run / "last.pth"),
            "--device",
            args.device,
            "--output",
            str(bench),
            "--overwrite",
            "--quiet",
            threads=args.threads,
        )
        results[name] = dense_pck(bench)
    metrics = [json.loads(line) for line in (runs["trained"] / "metrics.jsonl").read_text().splitlines()]
    summary = {
        "config": vars(args),
        "train_images": len(list(train_images.iterdir())),
        "eval_images": len(list(eval_images.iterdir())),
        "train_seconds": train_seconds,
        "loss_first_logged": metrics[0]["loss"] if metrics else None,
        "loss_last_logged": metrics[-1]["loss"] if metrics else None,
        "pck": results,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\n{MODEL} from scratch, {args.steps} steps x {args.batch_size} pairs at {args.resolution}px "
        f"({train_seconds / 60:.1f} min incl. setup); held-out synthetic pairs of other images:"
    )
    keys = sorted({k for r in results.values() for k in r})
    print(f"{'checkpoint':<10} " + " ".join(f"{k:>24}" for k in keys))
    for name, values in results.items():
        print(f"{name:<10} " + " ".join(f"{values.get(k, float('nan')):>24.2f}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
