"""Datasets of synthetic pairs from the L2M data engine (:mod:`densematch.synth`), in the pair-sample format.

* :class:`SyntheticPairs` reads a folder written by ``densematch synth`` (``pairs.json`` + pair folders).
* :class:`SyntheticPairStream` synthesises pairs on the fly from single images, without writing files.

Both yield the pair-sample dict of :mod:`densematch.data` (``image0``, ``image1``, ``warp0``, ``valid0``,
``K0``, ``K1``, ``T_0to1``, ``depth0``, ``depth1``), with ``warp0`` computed from ``depth0`` and the cameras
by :func:`~densematch.geometry.warps.warp_from_depth` and ``valid0`` = the stored covisibility mask.

>>> from densematch.data.synthetic import SyntheticPairs, SyntheticPairStream
>>> dataset = SyntheticPairs("out/")                                   # written by `densematch synth`
>>> stream = SyntheticPairStream("photos/", pairs_per_image=4)         # procedural depth, on the fly
>>> loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True, num_workers=2)
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..conventions import pixel_to_normalized
from ..errors import ImageReadError, InputShapeError
from ..geometry.warps import warp_from_depth
from ..io import load_image
from ..preprocess import to_tensor
from ..synth import store
from ..synth.engine import SynthConfig, SynthEngine, SynthPair
from ..synth.folder import list_images

log = logging.getLogger(__name__)


def pair_sample(
    image0: np.ndarray,
    image1: np.ndarray,
    depth0: np.ndarray,
    depth1: np.ndarray,
    valid0: np.ndarray,
    K0,
    K1,
    T_0to1,
) -> dict[str, torch.Tensor]:
    """Arrays of one pair -> the pair-sample dict (see :mod:`densematch.data`).

    Args:
        image0, image1: ``(H, W, 3)`` uint8 RGB.
        depth0, depth1: ``(H, W)`` float depth, 0 = unknown.
        valid0: ``(H, W)`` bool covisibility mask of image0.
        K0, K1: ``(3, 3)``; T_0to1: ``(4, 4)`` (array-likes).
    """
    if image0.shape[:2] != depth0.shape or image1.shape[:2] != depth1.shape or valid0.shape != depth0.shape:
        raise InputShapeError(
            f"pair arrays disagree in size: image0 {image0.shape}, depth0 {depth0.shape}, "
            f"valid0 {valid0.shape}, "
            f"image1 {image1.shape}, depth1 {depth1.shape}"
        )
    depth0_t = torch.from_numpy(np.ascontiguousarray(depth0, dtype=np.float32))
    K0_t, K1_t = (torch.as_tensor(np.asarray(K, dtype=np.float32)) for K in (K0, K1))
    T_t = torch.as_tensor(np.asarray(T_0to1, dtype=np.float32))
    height1, width1 = depth1.shape
    uv1, in_view = warp_from_depth(depth0_t, K0_t, K1_t, T_t, size1=(width1, height1))
    return {
        "image0": to_tensor(image0),
        "image1": to_tensor(image1),
        "warp0": pixel_to_normalized(uv1, width1, height1).to(torch.float32),
        "valid0": torch.from_numpy(np.ascontiguousarray(valid0, dtype=bool)) & in_view,
        "K0": K0_t,
        "K1": K1_t,
        "T_0to1": T_t,
        "depth0": depth0_t,
        "depth1": torch.from_numpy(np.ascontiguousarray(depth1, dtype=np.float32)),
    }


class SyntheticPairs(Dataset):
    """The pairs of a folder written by ``densematch synth`` (or :func:`densematch.synth.run_folder`).

    Args:
        root: the output folder (holding ``pairs.json``).
    """

    def __init__(self, root):
        self.root = Path(root)
        self.index = store.read_index(self.root)
        self.pairs = self.index.get("pairs", [])

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        entry = self.pairs[item]
        image0 = np.asarray(load_image(self.root / entry["image0"]))
        image1 = np.asarray(load_image(self.root / entry["image1"]))
        depth0 = self._array(entry["depth0"])
        depth1 = self._array(entry["depth1"])
        valid = cv2.imread(str(self.root / entry["valid0"]), cv2.IMREAD_GRAYSCALE)
        if valid is None:
            raise ImageReadError(f"cannot read the mask {self.root / entry['valid0']}")
        return pair_sample(
            image0, image1, depth0, depth1, valid > 0, entry["K0"], entry["K1"], entry["T_0to1"]
        )

    def _array(self, relative: str) -> np.ndarray:
        path = self.root / relative
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ImageReadError(f"cannot read {path}: {exc}") from exc


class SyntheticPairStream(Dataset):
    """Pairs synthesised on the fly from single images (nothing is written).

    Item ``i`` is pair ``i % pairs_per_image`` of image ``i // pairs_per_image``; it is deterministic for a
    given ``seed`` and epoch (:meth:`set_epoch` draws new pairs). An image that cannot be used (unreadable,
    bad depth, no overlapping pose) is skipped with a warning and the next image is used instead.

    Args:
        images: a folder of images or a list of image paths.
        depth_source: a depth source (:mod:`densematch.synth.depth`); default the procedural prior.
        config: a :class:`~densematch.synth.SynthConfig` (``pairs_per_image``, ``seed`` and the rest); keyword
            arguments override its fields.
        inpainter: the hole filler; default OpenCV Telea.
    """

    def __init__(
        self, images, depth_source=None, config: SynthConfig | None = None, *, inpainter=None, **overrides
    ):
        from ..synth.prior import ProceduralDepth

        self.paths = (
            list_images(images) if not isinstance(images, (list, tuple)) else [Path(p) for p in images]
        )
        if not self.paths:
            raise ImageReadError(f"no images in {images}")
        self.config = replace(config or SynthConfig(), **overrides)
        self.engine = SynthEngine(self.config, depth_source or ProceduralDepth(), inpainter=inpainter)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw a different set of pairs (the seed becomes ``(seed, epoch)``)."""
        self.epoch = int(epoch)
        self.engine.config = replace(self.config, seed=self.config.seed + 1_000_003 * self.epoch)

    def __len__(self) -> int:
        return len(self.paths) * self.config.pairs_per_image

    def synth_pair(self, item: int) -> SynthPair:
        """The :class:`~densematch.synth.SynthPair` behind item ``item`` (skipping unusable images)."""
        per_image = self.config.pairs_per_image
        for attempt in range(len(self.paths)):
            path = self.paths[(item // per_image + attempt) % len(self.paths)]
            try:
                image = np.asarray(load_image(path))
                return self.engine.pairs_for_image(path.stem, image, indices=[item % per_image])[0]
            except (ImageReadError, InputShapeError, RuntimeError) as exc:
                warnings.warn(f"skipping {path.name}: {exc}", RuntimeWarning, stacklevel=2)
        raise ImageReadError(f"none of the {len(self.paths)} images could be used for synthesis")

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        if not 0 <= item < len(self):
            raise IndexError(item)
        pair = self.synth_pair(item)
        return pair_sample(
            pair.image0, pair.image1, pair.depth0, pair.depth1, pair.valid0, pair.K0, pair.K1, pair.T_0to1
        )
