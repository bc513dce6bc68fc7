"""Benchmark pair lists: the ``pairs.json`` convention and the common in-memory form of every layout.

A benchmark folder is either a ``pairs.json`` set (the convention of ``shared/data/README.md``:
``{"name", "type", "pairs": [...]}`` with ``type`` one of ``relative_pose``, ``homography``,
``gt_correspondences``) or one of the standard layouts read by :mod:`densematch.eval.layouts`
(MegaDepth-1500, ScanNet-1500, HPatches sequences, WxBS). Every reader returns a
:class:`Benchmark`: the task and a list of :class:`BenchmarkPair` with absolute image paths and
ground truth as numpy arrays in the conventions of :mod:`densematch.conventions`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DensematchError, ImageReadError

TASKS = ("relative_pose", "homography", "gt_correspondences")
DENSE_GT_KEYS = ("depth0", "valid0")  # a relative-pose pair with these has a dense GT warp


class DatasetFormatError(DensematchError, ValueError):
    """A benchmark folder or pair file does not follow any supported format."""


@dataclass
class BenchmarkPair:
    """One image pair with its ground truth.

    Attributes:
        pair_id: unique, file-name-safe identifier (used for the prediction cache).
        image0, image1: absolute image paths.
        name0, name1: the image paths as written in the results (relative to the benchmark root).
        gt: task-dependent ground truth, numpy float64 arrays: ``K0``, ``K1`` (3x3) and ``T_0to1``
            (4x4) for ``relative_pose``; ``H_0to1`` (3x3) for ``homography``; ``corrs_0to1`` (N, 4)
            rows ``[u0, v0, u1, v1]`` for ``gt_correspondences``. Dense ground truth adds the paths
            ``depth0``, ``valid0`` and optionally ``depth1``.
        eval_scale0, eval_scale1: the evaluation resolution is the stored resolution times this
            factor; pixel thresholds and pixel errors refer to it (1 = stored resolution). Set by the
            standard layouts whose published protocol resizes images (MegaDepth: longer side 1200,
            ScanNet and HPatches: shorter side 480).
    """

    pair_id: str
    image0: Path
    image1: Path
    name0: str
    name1: str
    gt: dict[str, Any] = field(default_factory=dict)
    eval_scale0: float = 1.0
    eval_scale1: float = 1.0

    @classmethod
    def at(cls, index: int, root: Path, name0: str, name1: str, gt: dict) -> BenchmarkPair:
        """The ``index``-th pair of a benchmark; ``name0``, ``name1`` are image paths relative to ``root``."""
        return cls(make_pair_id(index, name0, name1), root / name0, root / name1, name0, name1, gt)

    @property
    def has_dense_gt(self) -> bool:
        return all(key in self.gt for key in DENSE_GT_KEYS)


@dataclass
class Benchmark:
    """A named list of pairs of one task, as read from a benchmark folder."""

    name: str
    task: str
    layout: str  # "pairs.json", "megadepth-1500", "scannet-1500", "hpatches", "wxbs"
    root: Path
    pairs: list[BenchmarkPair]

    @property
    def has_dense_gt(self) -> bool:
        return any(pair.has_dense_gt for pair in self.pairs)

    def subset(self, num: int | None) -> Benchmark:
        """The first ``num`` pairs (all when ``num`` is None)."""
        pairs = self.pairs if num is None else self.pairs[: max(int(num), 0)]
        return Benchmark(self.name, self.task, self.layout, self.root, pairs)


def make_pair_id(index: int, name0: str, name1: str, max_length: int = 120) -> str:
    """``0007-scene-a--scene-b``: the index keeps ids unique, the names keep them readable."""

    def slug(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(Path(name).with_suffix(""))).strip("-.")

    return f"{index:05d}-{slug(name0)}--{slug(name1)}"[:max_length]


def gt_array(value, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape`` (``-1`` = any length), else a clear error."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{what} is not a numeric array: {exc}") from None
    ok = array.ndim == len(shape) and all(s in (-1, n) for s, n in zip(shape, array.shape, strict=True))
    if not ok:
        raise DatasetFormatError(f"{what} must have shape {shape}, got {array.shape}")
    if not np.isfinite(array).all():
        raise DatasetFormatError(f"{what} contains non-finite values")
    return array


def check_images_exist(pairs: list[BenchmarkPair], root: Path) -> None:
    """Raise :class:`ImageReadError` naming the first missing image (and how many are missing)."""
    missing = sorted({str(p) for pair in pairs for p in (pair.image0, pair.image1) if not p.is_file()})
    if missing:
        raise ImageReadError(
            f"{len(missing)} image file(s) of the benchmark in {root} are missing, e.g. {missing[0]}"
        )


def _pose_gt(entry: dict, what: str) -> dict:
    gt = {key: gt_array(entry.get(key), (3, 3), f"{what} '{key}'") for key in ("K0", "K1")}
    T = gt_array(entry.get("T_0to1"), (-1, 4), f"{what} 'T_0to1'")
    if T.shape[0] == 3:
        T = np.vstack([T, [0.0, 0.0, 0.0, 1.0]])
    if T.shape != (4, 4):
        raise DatasetFormatError(f"{what} 'T_0to1' must be 4x4 or 3x4, got {T.shape}")
    gt["T_0to1"] = T
    return gt


def _pair_gt(entry: dict, task: str, root: Path, what: str) -> dict:
    if task == "relative_pose":
        gt = _pose_gt(entry, what)
        for key in ("depth0", "depth1", "valid0"):
            if entry.get(key) is not None:
                gt[key] = root / entry[key]
        if ("depth0" in gt) != ("valid0" in gt):
            raise DatasetFormatError(f"{what} has only one of 'depth0' and 'valid0'; dense GT needs both")
        return gt
    if task == "homography":
        return {"H_0to1": gt_array(entry.get("H_0to1"), (3, 3), f"{what} 'H_0to1'")}
    corrs = gt_array(entry.get("corrs_0to1"), (-1, 4), f"{what} 'corrs_0to1'")
    if len(corrs) == 0:
        raise DatasetFormatError(f"{what} 'corrs_0to1' is empty")
    return {"corrs_0to1": corrs}


def read_pairs_json(path) -> Benchmark:
    """Read a ``pairs.json`` file (paths in it are relative to its folder)."""
    path = Path(path)
    root = path.parent
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetFormatError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("pairs"), list):
        raise DatasetFormatError(f"{path} must hold an object with a 'pairs' list")
    task = data.get("type")
    if task not in TASKS:
        raise DatasetFormatError(
            f"{path} has type '{task}', which has no ground truth to benchmark against; "
            f"supported types: {', '.join(TASKS)}"
        )
    pairs = []
    for index, entry in enumerate(data["pairs"]):
        what = f"{path} pair {index}"
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("image0", "image1")
        ):
            raise DatasetFormatError(f"{what} must have string fields 'image0' and 'image1'")
        name0, name1 = entry["image0"], entry["image1"]
        pairs.append(BenchmarkPair.at(index, root, name0, name1, _pair_gt(entry, task, root, what)))
    if not pairs:
        raise DatasetFormatError(f"{path} lists no pairs")
    check_images_exist(pairs, root)
    return Benchmark(
        name=str(data.get("name") or root.name), task=task, layout="pairs.json", root=root, pairs=pairs
    )
