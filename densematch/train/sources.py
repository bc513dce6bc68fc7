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
from dataclasses import dataclass, replace
from pathlib import Path

from ..data.homography import HomographyConfig, HomographyPairs
from ..data.megadepth import MegaDepthConfig, is_megadepth_root, megadepth_scenes
from ..data.scannet import ScanNetConfig, is_scannet_root, scannet_indices
from ..errors import DensematchError
from .sampling import ConcatPairs, scene_weights

KINDS = ("megadepth", "scannet", "synthetic", "synthetic-live", "homography")
SCENE_WEIGHT_ALPHA = 0.75


@dataclass
class TrainingSource:
    """One ``--data`` argument, opened."""

    spec: str
    kind: str
    pairs: ConcatPairs


def parse_spec(spec: str) -> tuple[str | None, Path]:
    """``"kind:path"`` -> (kind, path); a plain path -> (None, path)."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in KINDS:
        return kind, Path(rest)
    return None, Path(spec)


def detect_kind(path: Path) -> str:
    if not path.exists():
        raise DensematchError(f"training data not found: {path}")
    if is_megadepth_root(path):
        return "megadepth"
    if is_scannet_root(path):
        return "scannet"
    detector = getattr(_synthetic_module(required=False), "is_synthetic_folder", None)
    if detector is not None and detector(path):
        return "synthetic"
    return "homography"


def open_source(spec: str, resolution: tuple[int, int], seed: int = 0) -> TrainingSource:
    """Open one data argument at the training resolution ``(H, W)``."""
    kind, path = parse_spec(spec)
    kind = kind or detect_kind(path)
    if kind == "megadepth":
        scenes = megadepth_scenes(path, MegaDepthConfig(resolution=resolution, seed=seed))
        pairs = ConcatPairs(scenes, scene_weights([len(s) for s in scenes], SCENE_WEIGHT_ALPHA))
    elif kind == "scannet":
        indices = scannet_indices(path, ScanNetConfig(resolution=resolution, seed=seed))
        pairs = ConcatPairs(indices, scene_weights([len(s) for s in indices], SCENE_WEIGHT_ALPHA))
    elif kind in ("synthetic", "synthetic-live"):
        pairs = ConcatPairs([_open_synthetic(path, resolution, live=kind == "synthetic-live")])
    else:
        pairs = ConcatPairs([HomographyPairs(path, replace(HomographyConfig(), resolution=resolution))])
    if len(pairs) == 0:
        raise DensematchError(f"the {kind} data at {path} holds no pairs")
    return TrainingSource(spec=spec, kind=kind, pairs=pairs)


def _synthetic_module(required: bool):
    try:
        return importlib.import_module("densematch.data.synthetic")
    except ImportError:
        if required:
            raise DensematchError(
                "synthetic training pairs need densematch.data.synthetic (the L2M data engine), "
                "which is not available in this installation"
            ) from None
        return None


def _open_synthetic(path: Path, resolution: tuple[int, int], live: bool):
    """The data engine's pairs: ``SyntheticPairs(root, resolution=(H, W))`` for a folder it wrote,
    ``LiveSyntheticPairs(image_root, resolution=(H, W))`` to synthesise pairs on the fly."""
    module = _synthetic_module(required=True)
    name = "LiveSyntheticPairs" if live else "SyntheticPairs"
    factory = getattr(module, name, None)
    if factory is None:
        raise DensematchError(f"densematch.data.synthetic has no {name}; cannot open {path}")
    return factory(path, resolution=resolution)
