"""The plain OpenCV script a user would write by hand: SIFT once per image, brute-force L2 + ratio test.

    python benchmarks/plain_sift_pairs.py IMAGES_DIR PAIRS_TXT OUT.npz [--num 8192] [--ratio 0.8]
        [--root-sift] [--mutual]

The reference for ``densematch match-pairs --matcher sift`` in ``bench_match_pairs.py --vs-plain``
(timed as a whole process, start-up included). Writes, per pair ``name0 name1``, the ``(M, 2)``
keypoint indices of its matches, and the keypoints of every image, to compare with match-pairs' files.
"""

import argparse

import cv2
import numpy as np
from PIL import Image

parser = argparse.ArgumentParser()
parser.add_argument("images")
parser.add_argument("pairs")
parser.add_argument("output")
parser.add_argument("--num", type=int, default=8192)
parser.add_argument("--ratio", type=float, default=0.8)
parser.add_argument("--root-sift", action="store_true")
parser.add_argument("--mutual", action="store_true")
args = parser.parse_args()

pairs = [line.split() for line in open(args.pairs) if line.strip() and not line.startswith("#")]
sift = cv2.SIFT_create(nfeatures=args.num)
keypoints, descriptors = {}, {}
for name in sorted({n for pair in pairs for n in pair}):
    grey = np.asarray(Image.open(f"{args.images}/{name}").convert("L"))  # as densematch decodes
    kps, desc = sift.detectAndCompute(grey, None)
    if args.root_sift:
        desc = np.sqrt(desc / (np.abs(desc).sum(axis=1, keepdims=True) + 1e-8)).astype(np.float32)
    keypoints[name] = np.array([kp.pt for kp in kps], np.float32)
    descriptors[name] = desc

matcher = cv2.BFMatcher(cv2.NORM_L2)
out = {f"kpts/{name}": kpts for name, kpts in keypoints.items()}
for name0, name1 in pairs:
    knn = matcher.knnMatch(descriptors[name0], descriptors[name1], k=2)
    good = [(m.queryIdx, m.trainIdx) for m, n in knn if m.distance < args.ratio * n.distance]
    good = np.array(good, np.int64).reshape(-1, 2)
    if args.mutual:
        back = {m.queryIdx: m.trainIdx for m in matcher.match(descriptors[name1], descriptors[name0])}
        good = good[[back.get(j, -1) == i for i, j in good]].reshape(-1, 2)
    out[f"matches/{name0}/{name1}"] = good
np.savez(args.output, **out)
