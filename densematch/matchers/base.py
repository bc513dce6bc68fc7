"""One interface for every matcher the tools use (benchmarks, many-pair matching, the CLI).

A :class:`PairMatcher` takes two images (paths or PIL images) and returns :class:`Matches` in
OpenCV pixel coordinates of each image's *original* resolution (see :mod:`densematch.conventions`).
Dense matchers can also return a :class:`DenseField`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Matches:
    """Putative correspondences between image 0 and image 1.

    ``kpts0[i]`` in image 0 corresponds to ``kpts1[i]`` in image 1. Pixel coordinates follow the
    OpenCV convention (centre of the top-left pixel is (0, 0)) at each image's stored resolution.
    """

    kpts0: np.ndarray  # (N, 2) float64, (u, v) in image 0
    kpts1: np.ndarray  # (N, 2) float64, (u, v) in image 1
    scores: np.ndarray  # (N,) float64, higher is more confident (certainty for dense matchers)
    size0: tuple[int, int]  # (width, height) of image 0
    size1: tuple[int, int]  # (width, height) of image 1
    # what the matcher said besides the matches, e.g. {"reverse": True} when IMAMatch used image 1 as query
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.kpts0 = np.asarray(self.kpts0, dtype=np.float64).reshape(-1, 2)
        self.kpts1 = np.asarray(self.kpts1, dtype=np.float64).reshape(-1, 2)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if not (len(self.kpts0) == len(self.kpts1) == len(self.scores)):
            raise ValueError(
                f"kpts0, kpts1 and scores must have the same length, got "
                f"{len(self.kpts0)}, {len(self.kpts1)}, {len(self.scores)}"
            )

    def __len__(self) -> int:
        return len(self.kpts0)


@dataclass
class DenseField:
    """A dense warp from image 0 to image 1 at image 0's resolution.

    ``warp[v, u]`` is the OpenCV pixel position in image 1 matched to pixel ``(u, v)`` of image 0,
    ``certainty[v, u]`` its certainty in [0, 1].
    """

    warp: np.ndarray  # (H0, W0, 2) float32
    certainty: np.ndarray  # (H0, W0) float32


class PairMatcher(ABC):
    """Base class of the tool-level matchers (``sift``, ``roma_outdoor``, ...)."""

    name: str = "matcher"

    @abstractmethod
    def match_pair(self, image0, image1) -> Matches:
        """Match two images (paths or PIL images) and return correspondences in OpenCV pixels."""

    def match_dense(self, image0, image1) -> DenseField | None:
        """A dense warp image0 -> image1, or None for sparse matchers."""
        return None

    def match_pair_and_dense(self, image0, image1) -> tuple[Matches, DenseField | None]:
        """Both outputs; dense matchers get them from one network run."""
        return self.match_pair(image0, image1), self.match_dense(image0, image1)

    @property
    def is_dense(self) -> bool:
        return False
