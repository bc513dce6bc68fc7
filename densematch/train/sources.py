"""Turning ``--data`` arguments into training sources.

A data argument is ``[KIND:]PATH``. Without a kind, the folder decides:

* ``megadepth``  ``PATH/prep_scene_info/`` exists: MegaDepth (split ``train_loftr``, two overlap copies,
  scene weights 1/n^0.75, shake and flip augmentation, as RoMa outdoor);
* ``scannet``    ``PATH/scannet_indices/`` exists: ScanNet (scene weights 1/n^0.75);
* ``synthetic``  a folder written by the L2M data engine (``densematch.data.synthetic``);
* ``synthetic-live``  (explicit only) synthetic pairs made on the fly from the images under PATH;
* ``homography`` any other folder of images: random homography pairs.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..data.homography import HomographyConfig, HomographyPairs
from ..data.megadepth import MegaDepthConfig, is_megadepth_root, megadepth_scenes
from ..data.scannet import ScanNetConfig, is_scannet_root, scannet_indices
from ..data.transforms import resize_depth, scale_intrinsics
from ..errors import DensematchError
from ..models.roma.targets import warp_targets
from .sampling import ConcatPairs, scene_weights

KINDS = ("megadepth", "scannet", "synthetic", "synthetic-live", "homography")
SCENE_WEIGHT_ALPHA = 0.75


@dataclass
class TrainingSource:
    """One ``--data`` argument, opened."""

    spec: str
    kind: str  # one of KINDS
    pairs: ConcatPairs  # pair samples at the training resolution


def parse_spec(spec: str) -> tuple[str | None, Path]:
    """``"kind:path"`` -> (kind, path); a plain path -> (None, path)."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in KINDS:
        return kind, Path(rest)
    return None, Path(spec)


def is_synthetic_folder(path: Path) -> bool:
    """A folder written by ``densematch synth``: its ``pairs.json`` entries carry depth and valid0 files."""
    index = Path(path) / "pairs.json"
    if not index.is_file():
        return False
    try:
        pairs = json.loads(index.read_text()).get("pairs", [])
    except (json.JSONDecodeError, AttributeError, OSError):
        return False
    return bool(pairs) and all(key in pairs[0] for key in ("depth0", "depth1", "valid0"))


def detect_kind(path: Path) -> str:
    """The kind of an existing data folder (see the module docstring)."""
    if is_megadepth_root(path):
        return "megadepth"
    if is_scannet_root(path):
        return "scannet"
    if is_synthetic_folder(path):
        return "synthetic"
    return "homography"


def open_source(spec: str, resolution: tuple[int, int], seed: int = 0) -> TrainingSource:
    """Open one data argument at the training resolution ``(H, W)``."""
    kind, path = parse_spec(spec)
    if not path.exists():
        raise DensematchError(f"training data not found: {path}")
    kind = kind or detect_kind(path)
    if kind == "megadepth":
        scenes = megadepth_scenes(path, MegaDepthConfig(resolution=resolution, seed=seed))
        pairs = ConcatPairs(scenes, scene_weights([len(s) for s in scenes], SCENE_WEIGHT_ALPHA))
    elif kind == "scannet":
        indices = scannet_indices(path, ScanNetConfig(resolution=resolution, seed=seed))
        pairs = ConcatPairs(indices, scene_weights([len(s) for s in indices], SCENE_WEIGHT_ALPHA))
    elif kind in ("synthetic", "synthetic-live"):
        pairs = ConcatPairs([Resized(_open_synthetic(path, live=kind == "synthetic-live"), resolution)])
    else:
        pairs = ConcatPairs([HomographyPairs(path, replace(HomographyConfig(), resolution=resolution))])
    if len(pairs) == 0:
        raise DensematchError(f"the {kind} data at {path} holds no pairs")
    return TrainingSource(spec=spec, kind=kind, pairs=pairs)


def _open_synthetic(path: Path, live: bool) -> Dataset:
    """The data engine's pairs: ``SyntheticPairs(folder)`` for a folder written by ``densematch synth``,
    ``SyntheticPairStream(image_folder)`` to synthesise pairs on the fly."""
    try:
        module = importlib.import_module("densematch.data.synthetic")
    except ImportError:
        raise DensematchError(
            "synthetic training pairs need densematch.data.synthetic (the L2M data engine), "
            "which is not available in this installation"
        ) from None
    return (module.SyntheticPairStream if live else module.SyntheticPairs)(path)


class Resized(Dataset):
    """Pair samples brought to the training resolution (datasets that make them at their own sizes)."""

    def __init__(self, dataset: Dataset, resolution: tuple[int, int]):
        self.dataset = dataset
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return resize_pair_sample(self.dataset[index], self.resolution)

    def sample(self, index: int, rng: np.random.Generator) -> dict:
        inner = self.dataset.sample(index, rng) if hasattr(self.dataset, "sample") else self.dataset[index]
        return resize_pair_sample(inner, self.resolution)


def resize_pair_sample(sample: dict, size: tuple[int, int]) -> dict:
    """A pair sample with both images (and depth maps, intrinsics, warp) at ``size = (H, W)``.

    Images: bicubic with antialiasing; depth: bilinear (as romatch's readers); ``warp0``/``valid0``:
    the warp at the new pixel centres (:func:`~densematch.models.roma.targets.warp_targets`). Normalised
    coordinates in image 1 do not change when image 1 is resized.
    """
    height, width = size
    out = dict(sample)
    sizes = {}
    for i in (0, 1):
        image = sample[f"image{i}"]
        h, w = image.shape[-2:]
        sizes[i] = (w, h)
        if (h, w) != (height, width):
            resized = F.interpolate(
                image[None], size=size, mode="bicubic", antialias=True, align_corners=False
            )
            out[f"image{i}"] = resized[0].clamp(0, 1)
        if f"depth{i}" in sample:
            out[f"depth{i}"] = resize_depth(sample[f"depth{i}"], size)
        if f"K{i}" in sample:
            K = scale_intrinsics(sample[f"K{i}"].double().numpy(), sizes[i], (width, height))
            out[f"K{i}"] = torch.as_tensor(K, dtype=torch.float32)
    if sizes[0] != (width, height):
        warp, valid = warp_targets(sample["warp0"][None], sample["valid0"][None], height, width, size1=size)
        out["warp0"], out["valid0"] = warp[0], valid[0].bool()
    return out
