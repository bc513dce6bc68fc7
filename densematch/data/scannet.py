"""ScanNet pairs in the format RoMa/LoFTR users already have (``romatch/datasets/scannet.py``).

Layout under ``root``::

    scannet_indices/*.npz                       name (N x 4 ints: scene, sub-scene, frame0, frame1), score (N)
    scans/scans_train/scene{scene:04d}_{sub:02d}/
        color/{frame}.jpg
        depth/{frame}.png                       uint16 millimetres (0 = unknown)
        pose/{frame}.txt                        4x4 camera-to-world
        intrinsic/intrinsic_color.txt           4x4; its 3x3 block is used for both images (as romatch)

As published, only pairs whose two frame ids are multiples of 10 are used and each index file is
capped at 10000 random pairs (seeded here). The depth map is resized to the image size and read with the
colour intrinsics (romatch notes that the depth intrinsics differ slightly). ScanNet intrinsics are used
as OpenCV intrinsics (as SuperGlue/LoFTR do).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DensematchError
from .transforms import (
    augmented_pair_sample,
    capped_indices,
    load_resized,
    resize_depth,
    scale_intrinsics,
)


class ScanNetFormatError(DensematchError, ValueError):
    """A ScanNet folder, index or frame file is not in the expected format."""


@dataclass(frozen=True)
class ScanNetConfig:
    resolution: tuple[int, int] = (480, 640)  # (H, W) of the returned images and depth maps
    frame_step: int = 10  # keep pairs whose frame ids are both multiples of this (romatch: 10)
    max_num_pairs: int = 10_000  # per index file, randomly capped (seeded)
    shake_t: int = 0
    hflip: bool = False
    seed: int = 0


def is_scannet_root(path) -> bool:
    return (Path(path) / "scannet_indices").is_dir()


def read_index(path) -> tuple[np.ndarray, np.ndarray]:
    """``name (N, 4)`` int64 and ``score (N,)`` of one ScanNet index file."""
    try:
        with np.load(path, allow_pickle=False) as index:
            names = np.asarray(index["name"]).astype(np.int64).reshape(-1, 4)
            scores = np.asarray(index["score"], dtype=np.float64).reshape(-1)
    except (OSError, KeyError, ValueError) as exc:
        raise ScanNetFormatError(
            f"cannot read ScanNet index {path} (needs arrays 'name' N x 4 and 'score'): {exc}"
        ) from exc
    return names, scores


def read_matrix(path, shape: tuple[int, int] = (4, 4)) -> np.ndarray:
    """A whitespace-separated text matrix (ScanNet poses and intrinsics)."""
    path = Path(path)
    if not path.is_file():
        raise ScanNetFormatError(f"ScanNet file not found: {path}")
    try:
        matrix = np.loadtxt(path, dtype=np.float64)
    except ValueError as exc:
        raise ScanNetFormatError(f"cannot parse {path}: {exc}") from exc
    if matrix.shape != shape:
        raise ScanNetFormatError(f"{path} holds a {matrix.shape} matrix, expected {shape}")
    return matrix


def read_depth_png(path) -> torch.Tensor:
    """A ScanNet uint16 depth PNG in metres (0 = unknown)."""
    path = Path(path)
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
    if depth is None or depth.ndim != 2:
        raise ScanNetFormatError(f"cannot read ScanNet depth image {path} (a 16-bit single-channel PNG)")
    return torch.from_numpy(depth.astype(np.float32) / 1000.0)


class ScanNetIndex(Dataset):
    """The pairs of one ``scannet_indices`` file (see the module docstring for ``sample``/``__getitem__``)."""

    def __init__(self, root, index_path, config: ScanNetConfig = ScanNetConfig()):
        self.scans = Path(root) / "scans" / "scans_train"
        self.config = config
        names, scores = read_index(index_path)
        keep = (names[:, 2:] % config.frame_step == 0).all(axis=1)
        names, scores = names[keep], scores[keep]
        chosen = capped_indices(
            len(names), config.max_num_pairs, [config.seed, *Path(index_path).name.encode()]
        )
        self.names, self.scores = names[chosen], scores[chosen]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, np.random.default_rng(index))

    def sample(self, index: int, rng: np.random.Generator) -> dict:
        scene, sub, frame0, frame1 = (int(v) for v in self.names[index])
        folder = self.scans / f"scene{scene:04d}_{sub:02d}"
        K = read_matrix(folder / "intrinsic" / "intrinsic_color.txt")[:3, :3]
        height, width = self.config.resolution
        views, cam_to_world = [], []
        for frame in (frame0, frame1):
            image, original = load_resized(folder / "color" / f"{frame}.jpg", (height, width))
            depth = resize_depth(read_depth_png(folder / "depth" / f"{frame}.png"), (height, width))
            views.append(
                {"image": image, "depth": depth, "K": scale_intrinsics(K, original, (width, height))}
            )
            cam_to_world.append(read_matrix(folder / "pose" / f"{frame}.txt"))
        T_0to1 = np.linalg.inv(cam_to_world[1]) @ cam_to_world[0]
        if not np.isfinite(T_0to1).all():  # ScanNet marks lost tracking with -inf poses: no ground truth
            T_0to1 = np.eye(4)
            views[0]["depth"] = torch.zeros_like(views[0]["depth"])
        return augmented_pair_sample(views, T_0to1, rng, shake_t=self.config.shake_t, hflip=self.config.hflip)


def scannet_indices(root, config: ScanNetConfig = ScanNetConfig()) -> list[ScanNetIndex]:
    """One :class:`ScanNetIndex` per file in ``root/scannet_indices`` (empty ones dropped)."""
    index_dir = Path(root) / "scannet_indices"
    if not index_dir.is_dir():
        raise ScanNetFormatError(f"{root} is not a ScanNet folder: {index_dir} does not exist")
    datasets = [ScanNetIndex(root, path, config) for path in sorted(index_dir.glob("*.npz"))]
    datasets = [d for d in datasets if len(d)]
    if not datasets:
        raise ScanNetFormatError(
            f"no ScanNet pairs in {index_dir} (with frame ids multiples of {config.frame_step})"
        )
    return datasets
