"""MegaDepth pairs in the format RoMa/DKM/LoFTR users already have.

Layout under ``root`` (``romatch/datasets/megadepth.py``; preprocessing of DKM/D2-Net)::

    prep_scene_info/{scene}.npy   np.save'd dict (allow_pickle): image_paths, depth_paths (relative to
                                  root; depth files are HDF5 with dataset "depth"), intrinsics (3x3 per
                                  image, COLMAP pixel-corner convention), poses (4x4 world->camera per
                                  image), pairs (N x 2 image indices), overlaps (N)
    <image_paths>, <depth_paths>

Each sample is a pair sample (:mod:`densematch.data`) at ``resolution`` with depth, OpenCV intrinsics and
``T_0to1 = pose1 @ inv(pose0)``; ``warp0``/``valid0`` come from depth and pose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DensematchError
from .transforms import (
    augmented_pair_sample,
    capped_indices,
    corner_to_opencv,
    load_resized,
    resize_depth,
    scale_intrinsics,
)

TEST_SCENES = ("0017", "0004", "0048", "0013")  # romatch split "test"
TEST_SCENES_LOFTR = ("0015", "0022")  # romatch split "test_loftr" (Mega-1500)
LOFTR_IGNORE = (
    "0121",
    "0133",
    "0168",
    "0178",
    "0229",
    "0349",
    "0412",
    "0430",
    "0443",
    "1001",
    "5014",
    "5015",
    "5016",
)
IMC21_SCENES = ("0008", "0019", "0021", "0024", "0025", "0032", "0063", "1589")


class MegaDepthFormatError(DensematchError, ValueError):
    """A MegaDepth folder or scene-info file is not in the expected format."""


@dataclass(frozen=True)
class MegaDepthConfig:
    """Which pairs, at which size, with which augmentation (defaults: RoMa outdoor training)."""

    resolution: tuple[int, int] = (560, 560)  # (H, W) of the returned images and depth maps
    split: str = "train_loftr"  # "train", "train_loftr", "test", "test_loftr" or "all"
    scenes: tuple[str, ...] | None = None  # explicit scene names (overrides split)
    min_overlaps: tuple[float, ...] = (
        0.01,
        0.35,
    )  # one copy of the pairs per value (romatch concatenates two)
    max_overlap: float = 1.0
    max_num_pairs: int = 100_000  # per scene and copy, randomly capped (seeded)
    loftr_ignore: bool = True  # skip LoFTR's ignored scenes
    imc21_ignore: bool = True  # skip the IMC 2021 test scenes
    shake_t: int = 32  # random whole-pixel translation of both views
    hflip: bool = True  # flip both views with probability 0.5
    seed: int = 0  # for the pair caps


def is_megadepth_root(path) -> bool:
    return (Path(path) / "prep_scene_info").is_dir()


def read_scene_info(path) -> dict:
    """Load one ``prep_scene_info/{scene}.npy`` and check that it has the expected keys."""
    path = Path(path)
    try:
        info = np.load(path, allow_pickle=True).item()
    except Exception as exc:  # pickle/format errors of a corrupt file
        raise MegaDepthFormatError(f"cannot read MegaDepth scene info {path}: {exc}") from exc
    required = ("image_paths", "depth_paths", "intrinsics", "poses", "pairs", "overlaps")
    missing = [key for key in required if key not in info] if isinstance(info, dict) else list(required)
    if missing:
        raise MegaDepthFormatError(f"MegaDepth scene info {path} lacks {', '.join(missing)}")
    return info


class MegaDepthScene(Dataset):
    """The pairs of one scene with ``min_overlap < overlap < max_overlap``.

    ``sample(index, rng)`` draws the augmentation from ``rng``; ``dataset[index]`` uses a generator
    seeded by ``index``.
    """

    def __init__(self, root, info: dict, name: str, config: MegaDepthConfig, min_overlap: float):
        self.root = Path(root)
        self.name = name
        self.config = config
        self.info = info
        pairs = np.asarray(info["pairs"]).reshape(-1, 2).astype(np.int64)
        overlaps = np.asarray(info["overlaps"], dtype=np.float64).reshape(-1)
        keep = (overlaps > min_overlap) & (overlaps < config.max_overlap)
        pairs, overlaps = pairs[keep], overlaps[keep]
        seed = [config.seed, round(min_overlap * 1e6), *name.encode()]
        chosen = capped_indices(len(pairs), config.max_num_pairs, seed)
        self.pairs, self.overlaps = pairs[chosen], overlaps[chosen]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, np.random.default_rng(index))

    def sample(self, index: int, rng: np.random.Generator) -> dict:
        i0, i1 = self.pairs[index]
        views = [self._view(i) for i in (i0, i1)]
        poses = [np.asarray(self.info["poses"][i], dtype=np.float64).reshape(4, 4) for i in (i0, i1)]
        T_0to1 = poses[1] @ np.linalg.inv(poses[0])
        return augmented_pair_sample(views, T_0to1, rng, shake_t=self.config.shake_t, hflip=self.config.hflip)

    def _view(self, i: int) -> dict:
        height, width = self.config.resolution
        image, original = load_resized(self.root / str(self.info["image_paths"][i]), (height, width))
        depth = resize_depth(read_h5_depth(self.root / str(self.info["depth_paths"][i])), (height, width))
        K = scale_intrinsics(corner_to_opencv(self.info["intrinsics"][i]), original, (width, height))
        return {"image": image, "depth": depth, "K": K}


def read_h5_depth(path) -> torch.Tensor:
    """The ``"depth"`` dataset of a MegaDepth HDF5 depth file as a float32 tensor."""
    path = Path(path)
    if not path.is_file():
        raise MegaDepthFormatError(f"MegaDepth depth file not found: {path}")
    try:
        with h5py.File(path, "r") as handle:
            return torch.from_numpy(np.asarray(handle["depth"], dtype=np.float32))
    except (OSError, KeyError) as exc:
        raise MegaDepthFormatError(f"cannot read dataset 'depth' from {path}: {exc}") from exc


def scene_names(root, config: MegaDepthConfig) -> list[str]:
    """The scenes of ``config.split`` (or ``config.scenes``) found under ``root/prep_scene_info``."""
    info_dir = Path(root) / "prep_scene_info"
    if not info_dir.is_dir():
        raise MegaDepthFormatError(f"{root} is not a MegaDepth folder: {info_dir} does not exist")
    available = sorted(p.stem for p in info_dir.glob("*.npy"))
    if config.scenes is not None:
        unknown = sorted(set(config.scenes) - set(available))
        if unknown:
            raise MegaDepthFormatError(f"MegaDepth scenes not found in {info_dir}: {', '.join(unknown)}")
        return [s for s in available if s in set(config.scenes)]
    splits = {
        "train": lambda s: s not in TEST_SCENES,
        "train_loftr": lambda s: s not in TEST_SCENES_LOFTR,
        "test": lambda s: s in TEST_SCENES,
        "test_loftr": lambda s: s in TEST_SCENES_LOFTR,
        "all": lambda s: True,
    }
    if config.split not in splits:
        raise ValueError(f"unknown MegaDepth split '{config.split}'; use one of {', '.join(splits)}")
    chosen = [s for s in available if splits[config.split](s)]
    ignored = set(LOFTR_IGNORE if config.loftr_ignore else ()) | set(
        IMC21_SCENES if config.imc21_ignore else ()
    )
    return [s for s in chosen if s not in ignored]


def megadepth_scenes(root, config: MegaDepthConfig = MegaDepthConfig()) -> list[MegaDepthScene]:
    """One :class:`MegaDepthScene` per scene and per ``min_overlaps`` value (empty scenes dropped)."""
    scenes = []
    for name in scene_names(root, config):
        info = read_scene_info(Path(root) / "prep_scene_info" / f"{name}.npy")
        for min_overlap in config.min_overlaps:
            scene = MegaDepthScene(root, info, name, config, min_overlap)
            if len(scene):
                scenes.append(scene)
    if not scenes:
        raise MegaDepthFormatError(f"no MegaDepth pairs under {root} for split '{config.split}'")
    return scenes
