"""Train a semi-dense matcher (S2LD, IMAMatch) from scratch on CPU and show held-out matching improving.

1. ``densematch synth``: synthetic pairs with exact depth/pose ground truth from real single images
   (``--images``; training and held-out pairs come from disjoint images), small resolution;
2. ``densematch train MODEL --data synthetic:...``: the published loss and optimiser recipe, except a warm-up
   of 10 % of the steps and no lr drops (the published warm-up spans tens of thousands of steps and the
   milestones six halvings over 30 epochs; a few hundred steps need neither);
3. held-out evaluation of the initial and the trained weights (same seed, so the same initialisation):
   every match at coarse threshold 0 (mutual nearest neighbours, refined), scored against the exact
   ground truth: precision at 3 / 5 px and correct matches per pair, through the model's ``match_images``.

Everything runs on one thread. Example (about 3 s per IMAMatch step, batch 2, on one CPU core at 96 x 96)::

    python benchmarks/train_semidense.py --model s2ld --steps 150 --work /tmp/sd_bench
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import densematch
from densematch.data.synthetic import SyntheticPairs
from densematch.models.semidense.supervision import warp_points

# extra inference settings evaluated per model (besides the model's published ones, at coarse threshold 0)
SETTINGS = {
    # IMAMatch: published densification (add_matches 4, whose classification/regression consistency check
    # drops matches the fine classifier does not confirm) and without it (no check)
    "imamatch_megadepth": {"densified (add_matches=4)": {}, "plain (add_matches=0)": {"add_matches": 0}},
    "imamatch_scannet": {"plain (add_matches=0)": {}, "densified (add_matches=4)": {"add_matches": 4}},
}


def run(*args: str, threads: int = 1) -> None:
    """``densematch ARGS`` in a subprocess with ``threads`` OpenMP threads (more than the free cores make
    every parallel region spin: a 2-thread training step took 44 s instead of 3 s beside one other job)."""
    print("$", " ".join(args), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", "densematch", *args], check=True, env=env)


def synthesise(images: Path, out: Path, first: int, count: int, resolution: int, pairs: int, seed: int) -> Path:
    if (out / "pairs.json").exists():
        return out
    subset = out.parent / f"{out.name}_images"
    subset.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for path in files[first:first + count]:
        link = subset / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    run("synth", str(subset), "--output", str(out), "--resolution", str(resolution), "--pairs-per-image", str(pairs),
        "--seed", str(seed), "--no-inpaint", "--workers", "1", "--quiet")
    return out


def _uint8(image: torch.Tensor):
    """(3, H, W) RGB in [0, 1] -> (H, W, 3) uint8, the form ``match_images`` takes."""
    return (image.permute(1, 2, 0) * 255).round().byte().numpy()


@torch.no_grad()
def evaluate(model_name: str, weights: Path, pairs: SyntheticPairs, resolution: int,
             threshold_px=(3.0, 5.0), **options) -> dict:
    """Held-out scores of ``match_images`` (network at ``resolution``, coarse threshold 0, ``options``)
    against exact GT."""
    model = densematch.load(model_name, device="cpu", weights=str(weights), resize=resolution,
                            coarse_threshold=0.0, **options).eval()
    matches = with_gt = 0
    correct = dict.fromkeys(threshold_px, 0)
    for index in range(len(pairs)):
        sample = {k: v[None] for k, v in pairs[index].items()}
        image0, image1 = (_uint8(sample[key][0]) for key in ("image0", "image1"))
        out = model.match_images(image0, image1)
        kpts0, kpts1 = out["kpts0"].float(), out["kpts1"].float()
        gt1, valid = warp_points(kpts0[None], sample)
        error = (kpts1 - gt1[0]).norm(dim=-1)[valid[0]]
        matches += len(kpts0)
        with_gt += int(valid.sum())
        for t in threshold_px:
            correct[t] += int((error < t).sum())
    report = {"matches_per_pair": matches / len(pairs)}
    for t in threshold_px:
        report[f"precision@{t:g}px"] = correct[t] / max(with_gt, 1)
        report[f"correct@{t:g}px_per_pair"] = correct[t] / len(pairs)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="s2ld")
    parser.add_argument("--images", type=Path, default=Path("../shared/data/single_images/images"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/densematch_train_semidense"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=96)
    parser.add_argument("--train-images", type=int, default=60)
    parser.add_argument("--heldout-images", type=int, default=10)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = synthesise(args.images, args.work / "train", 0, args.train_images, args.resolution, 4, args.seed)
    heldout = synthesise(args.images, args.work / "heldout", args.train_images, args.heldout_images,
                         args.resolution, 2, args.seed + 1)
    common = ["--data", f"synthetic:{train}", "--batch-size", str(args.batch_size), "--resolution",
              str(args.resolution), "--seed", str(args.seed), "--workers", "0", "--no-progress"]
    initial = args.work / f"{args.model}_init"
    trained = args.work / f"{args.model}_trained_{args.steps}"
    if not (initial / "last.pth").exists():
        run("train", args.model, "--steps", "0", "--output", str(initial), *common)
    if not (trained / "last.pth").exists():
        extra = ["--lr", str(args.lr)] if args.lr is not None else []
        run("train", args.model, "--steps", str(args.steps), "--output", str(trained),
            "--warmup-steps", str(max(args.steps // 10, 1)), "--lr-milestones", "1.0", "--log-every", "10",
            *extra, *common)
    pairs = SyntheticPairs(heldout)
    results = {"model": args.model, "steps": args.steps, "resolution": args.resolution, "heldout_pairs": len(pairs)}
    for setting, options in SETTINGS.get(args.model, {"": {}}).items():
        for name, folder in (("initial", initial), ("trained", trained)):
            key = f"{name} {setting}".strip()
            results[key] = evaluate(args.model, folder / "last.pth", pairs, args.resolution, **options)
            print(key, json.dumps(results[key]), flush=True)
    print(json.dumps(results, indent=2))
    (args.work / f"{args.model}_results_{args.steps}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
