"""What one matching process does: the matcher description (:class:`MatcherSpec`) every worker builds its
matcher from, and the work on chunks of images or pairs (:class:`MatchWorker`). How chunks are spread over
processes (here or on Ray workers) is :mod:`densematch.sfm.executors`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..defaults import DENSE_NUM_MATCHES
from ..errors import DensematchError
from ..matchers.base import Matches, PairMatcher
from .h5io import ImageFeatures, PairMatches
from .loading import ImageCache, prefetched

KINDS = ("keypoints", "dense")



@dataclass(frozen=True)
class MatcherSpec:
    """How each worker builds its own matcher (matchers are never sent between processes).

    ``kind`` is ``"keypoints"`` for detector-based matchers (per-image keypoints and descriptors,
    matched by descriptor: the registry's ``classical`` entries) and ``"dense"`` for matchers that return
    correspondences per pair (RoMa family, S2LD, IMAMatch, XFeat), whose points are snapped to shared
    keypoints afterwards.
    """

    name: str  # a name accepted by densematch.get_matcher (or a label for ``factory``)
    weights: str | None = None  # checkpoint path; None = the published weights
    num: int = DENSE_NUM_MATCHES  # correspondences sampled per pair (dense) / keypoint cap per image (sift)
    seed: int = 0  # seed of the dense sampling
    device: str | None = None  # None: "cuda" when the worker sees a GPU, else "cpu"
    options: tuple[tuple[str, Any], ...] = ()  # keyword arguments of get_matcher (over the entry's sfm_options)
    factory: Callable[[str], PairMatcher] | None = field(default=None, compare=False)  # factory(device)
    kind: str | None = None  # None: "keypoints" for classical registry entries, "dense" otherwise

    def __post_init__(self):
        """Check the name and weights in the driver, before any worker starts."""
        if self.factory is not None:
            return
        from ..errors import WeightsError
        from ..registry import get_entry

        entry = get_entry(self.name)
        if self.weights is not None and not entry.takes_weights:
            raise DensematchError(f"the '{self.name}' matcher has no weights; drop --weights")
        if self.weights is not None and not os.path.isfile(self.weights):
            raise WeightsError(f"weights file not found: {self.weights}")

    @property
    def resolved_kind(self) -> str:
        if self.kind is None and self.factory is None:
            from ..registry import get_entry

            kind = "keypoints" if get_entry(self.name).kind == "classical" else "dense"
        else:
            kind = self.kind or "dense"
        if kind not in KINDS:
            raise DensematchError(f"unknown matcher kind '{kind}'; expected one of {', '.join(KINDS)}")
        return kind

    @property
    def effective_options(self) -> dict[str, Any]:
        """``options`` on top of the registry entry's ``sfm_options`` (none for custom factories)."""
        from ..registry import get_entry

        defaults = {} if self.factory is not None else dict(get_entry(self.name).sfm_options)
        return {**defaults, **dict(self.options)}

    def describe(self) -> dict:
        """JSON-ready settings that determine the output (stored in the HDF5 files, compared on resume)."""
        weights = None if self.weights is None else os.path.abspath(self.weights)
        return {
            "matcher": self.name,
            "kind": self.resolved_kind,
            "weights": weights,
            "num": self.num,
            "seed": self.seed,
            "options": {k: repr(v) for k, v in sorted(self.effective_options.items())},
        }

    def build(self) -> PairMatcher:
        device = self.device
        if device is None and self.resolved_kind == "keypoints" and self.factory is None:
            device = "cpu"  # classical detectors run on the CPU: no torch import (~1.5 s) to ask about GPUs
        elif device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.factory is not None:
            matcher = self.factory(device)
        else:
            from ..matchers import get_matcher

            matcher = get_matcher(
                self.name,
                device=device,
                weights=self.weights,
                num=self.num,
                seed=self.seed,
                **self.effective_options,
            )
        if self.resolved_kind == "keypoints" and not is_keypoint_matcher(matcher):
            raise DensematchError(
                f"matcher '{self.name}' has no detect()/match_descriptors(); it cannot be "
                "used as a keypoint matcher"
            )
        return matcher


def is_keypoint_matcher(matcher) -> bool:
    """Whether ``matcher`` detects keypoints per image and matches descriptors (as ``SiftMatcher``)."""
    return callable(getattr(matcher, "detect", None)) and callable(
        getattr(matcher, "match_descriptors", None)
    )


class MatchWorker:
    """The work of one process: detection, descriptor matching or dense matching of chunks.

    Images are decoded in background threads (two ahead of the model per slot) and kept in a small
    cache, so an image that occurs in consecutive pairs is read once. Dense pairs are grouped in
    batches of ``batch_size``; a matcher that has ``match_batch(list of (image0, image1)) -> list of
    Matches`` gets whole batches, any other one pair at a time.
    """

    def __init__(self, spec: MatcherSpec, images_dir: str, batch_size: int = 1, defer_errors: bool = False):
        self.spec = spec
        self._error: Exception | None = None
        try:
            self.matcher = spec.build()
        except Exception as exc:  # a Ray actor reports it from ready(), where the driver can see its type
            if not defer_errors:
                raise
            self._error = exc
        self.images = ImageCache(images_dir, capacity=max(16, 4 * batch_size))
        self.batch_size = max(1, int(batch_size))
        self._descriptors: OrderedDict[str, np.ndarray] = OrderedDict()

    def ready(self) -> None:
        """Raise the error that building the matcher raised (Ray actors), else nothing."""
        if self._error is not None:
            raise self._error

    def detect(self, names: Sequence[str]) -> list[ImageFeatures]:
        """Keypoints, scores and ``(D, N)`` descriptors of each image."""
        results = []
        scored = getattr(self.matcher, "detect_scored", None)
        for _, image in prefetched(names, self.images.get, lookahead=2):
            if callable(scored):
                keypoints, scores, descriptors, size = scored(image)
            else:
                keypoints, descriptors, size = self.matcher.detect(image)
                scores = np.ones(len(keypoints))
            results.append(ImageFeatures(keypoints, scores, size, np.asarray(descriptors).T))
        return results

    def match_descriptors(
        self, pairs: Sequence[tuple[str, str]], descriptors: Mapping[str, Any], sizes: Mapping[str, int]
    ) -> list[PairMatches]:
        """``matches0`` of each pair from the images' ``(N, D)`` descriptors (arrays or Ray object refs)."""
        results = []
        for name0, name1 in pairs:
            desc0, desc1 = self._resolve(name0, descriptors), self._resolve(name1, descriptors)
            indices, scores = self.matcher.match_descriptors(desc0, desc1)
            results.append(PairMatches.from_indices(indices, scores, sizes[name0]))
        return results

    def _resolve(self, name: str, descriptors: Mapping[str, Any]) -> np.ndarray:
        if name not in self._descriptors:
            value = descriptors[name]
            if not isinstance(value, np.ndarray):  # a Ray ObjectRef
                import ray

                value = ray.get(value)
            self._descriptors[name] = value
            while len(self._descriptors) > 64:
                self._descriptors.popitem(last=False)
        self._descriptors.move_to_end(name)
        return self._descriptors[name]

    def match_dense(self, pairs: Sequence[tuple[str, str]]) -> list[Matches]:
        """Raw correspondences of each pair (OpenCV pixels of the stored images)."""
        results, batch = [], []
        for _, images in prefetched(pairs, self.images.pair, lookahead=2 * self.batch_size):
            batch.append(images)
            if len(batch) == self.batch_size:
                results.extend(self._match_batch(batch))
                batch = []
        if batch:
            results.extend(self._match_batch(batch))
        return results

    def _match_batch(self, batch: list) -> list[Matches]:
        match_batch = getattr(self.matcher, "match_batch", None)
        if callable(match_batch) and len(batch) > 1:
            results = list(match_batch(batch))
            if len(results) != len(batch):
                raise RuntimeError(f"match_batch returned {len(results)} results for {len(batch)} pairs")
            return results
        return [self.matcher.match_pair(image0, image1) for image0, image1 in batch]
