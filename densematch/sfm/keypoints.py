"""Keypoints from dense matches that are shared across pairs, so that COLMAP can form tracks.

A dense matcher samples different pixels in every pair, so the same scene point appears at slightly
different positions in the pairs of one image. As hloc's ``match_dense.py`` does, the matched points
of each image are snapped to a per-image grid and voted on:

1. **Vote.** Each image is divided into ``cell_size`` x ``cell_size`` pixel cells, each cell into
   sub-bins of about ``max_error`` pixels. Every matched point of the image (from every pair that
   contains it) adds its score to its sub-bin.
2. **Choose.** In each cell the sub-bin with the largest vote wins; the cell's keypoint is the
   score-weighted mean position of the points in that sub-bin, its score the vote. Optionally only
   the ``max_keypoints`` strongest keypoints of an image are kept. Keypoints are stored in raster
   order of their cells.
3. **Assign.** Every matched point is assigned to the nearest keypoint of its own or a neighbouring
   cell if that keypoint is at most ``max_error`` pixels away; otherwise its match is dropped. Among
   matches that share a keypoint (in either image) only the highest-scoring one survives, so the
   result is one-to-one.

Everything is computed in pair-list order with numpy and no randomness, so the keypoints depend only
on the pair list and the raw matches (not on how the matching was distributed over workers).
All coordinates are OpenCV pixels (the centre of the top-left pixel is (0, 0)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DensematchError
from .h5io import ImageFeatures, PairMatches


@dataclass(frozen=True)
class GridConfig:
    cell_size: int = 4  # pixels; at most one keypoint per cell_size x cell_size square of an image
    max_error: float = 2.0  # pixels; vote bin size and the largest allowed point-to-keypoint distance
    max_keypoints: int | None = 8192  # per image, only the most-voted keypoints are kept; None keeps all
    min_score: float = 0.0  # raw correspondences scoring below this are ignored

    def __post_init__(self):
        if int(self.cell_size) != self.cell_size or self.cell_size < 1:
            raise DensematchError(
                f"cell_size must be a positive integer number of pixels, got {self.cell_size}"
            )
        if not 0 < self.max_error <= self.cell_size:
            raise DensematchError(
                f"max_error must be in (0, cell_size = {self.cell_size}] pixels, got {self.max_error}"
            )
        if self.max_keypoints is not None and self.max_keypoints < 1:
            raise DensematchError(f"max_keypoints must be at least 1 (or None), got {self.max_keypoints}")


class _ImageGrid:
    """The cells and vote bins of one image of size (width, height)."""

    def __init__(self, size: tuple[int, int], config: GridConfig):
        self.size = (int(size[0]), int(size[1]))
        self.cell = float(config.cell_size)
        self.sub = math.ceil(config.cell_size / config.max_error)  # sub-bins per cell side
        self.bin = self.cell / self.sub
        self.cols = max(1, math.ceil(self.size[0] / self.cell))
        self.rows = max(1, math.ceil(self.size[1] / self.cell))

    def inside(self, uv: np.ndarray) -> np.ndarray:
        w, h = self.size
        return (uv[:, 0] >= -0.5) & (uv[:, 0] < w - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < h - 0.5)

    def cells(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Column and row of the cell of each point (clipped to the grid)."""
        corner = uv + 0.5  # corner-origin pixels: cells start at multiples of the cell size
        col = np.clip(np.floor(corner[:, 0] / self.cell), 0, self.cols - 1).astype(np.int64)
        row = np.clip(np.floor(corner[:, 1] / self.cell), 0, self.rows - 1).astype(np.int64)
        return col, row

    def bins(self, uv: np.ndarray) -> np.ndarray:
        """Global vote-bin id of each point: ``cell id * sub**2 + sub-bin id``."""
        col, row = self.cells(uv)
        local = uv + 0.5 - np.stack([col, row], axis=1) * self.cell
        sub = np.clip(np.floor(local / self.bin), 0, self.sub - 1).astype(np.int64)
        return (row * self.cols + col) * self.sub**2 + sub[:, 1] * self.sub + sub[:, 0]


class _Votes:
    """Score sums per vote bin of one image, kept compact: (bin ids, sum w, sum w*u, sum w*v)."""

    def __init__(self, grid: _ImageGrid):
        self.grid = grid
        self._compact = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))
        self._chunks: list[tuple[np.ndarray, ...]] = []
        self._pending = 0

    def add(self, uv: np.ndarray, weights: np.ndarray) -> None:
        keep = self.grid.inside(uv)
        uv, weights = uv[keep], weights[keep]
        self._chunks.append((self.grid.bins(uv), weights, weights * uv[:, 0], weights * uv[:, 1]))
        self._pending += len(uv)
        if self._pending > max(1 << 20, 2 * len(self._compact[0])):
            self.compact()

    def compact(self) -> tuple[np.ndarray, ...]:
        if self._chunks:
            parts = [np.concatenate(column) for column in zip(self._compact, *self._chunks, strict=True)]
            ids, inverse = np.unique(parts[0], return_inverse=True)
            self._compact = (ids, *(np.bincount(inverse, weights=p, minlength=len(ids)) for p in parts[1:]))
            self._chunks, self._pending = [], 0
        return self._compact


@dataclass
class _Keypoints:
    grid: _ImageGrid
    uv: np.ndarray  # (K, 2) float64 (values exactly representable in float32, as stored)
    scores: np.ndarray  # (K,)
    lookup: np.ndarray  # (rows * cols,) keypoint index of each cell, -1 if none

    def assign(self, uv: np.ndarray, max_error: float) -> np.ndarray:
        """Index of the nearest keypoint within ``max_error`` in the 3x3 cells around each point, or -1."""
        grid = self.grid
        best = np.full(len(uv), -1, np.int64)
        if len(self.uv) == 0:
            return best
        col, row = grid.cells(uv)
        best_distance = np.full(len(uv), np.inf)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                c, r = col + dc, row + dr
                on_grid = (c >= 0) & (c < grid.cols) & (r >= 0) & (r < grid.rows)
                ids = np.where(on_grid, self.lookup[np.where(on_grid, r * grid.cols + c, 0)], -1)
                distance = np.where(
                    ids >= 0, np.linalg.norm(uv - self.uv[np.maximum(ids, 0)], axis=1), np.inf
                )
                closer = distance < best_distance
                best[closer], best_distance[closer] = ids[closer], distance[closer]
        best[~(best_distance <= max_error) | ~grid.inside(uv)] = -1
        return best


class DenseKeypointAggregator:
    """Turns raw dense matches of many pairs into shared per-image keypoints and hloc ``matches0``.

    Usage: :meth:`add` every pair (pass 1), then :meth:`features` once, then :meth:`assign` every pair
    (pass 2) with the same raw matches.
    """

    def __init__(self, config: GridConfig = GridConfig()):
        self.config = config
        self._votes: dict[str, _Votes] = {}
        self._keypoints: dict[str, _Keypoints] | None = None

    def _grid(self, name: str, size: tuple[int, int]) -> _Votes:
        votes = self._votes.get(name)
        if votes is None:
            votes = self._votes[name] = _Votes(_ImageGrid(size, self.config))
        elif votes.grid.size != (int(size[0]), int(size[1])):
            raise DensematchError(
                f"image '{name}' was matched at two sizes: {votes.grid.size} and {tuple(size)}"
            )
        return votes

    def add(self, name0: str, name1: str, matches) -> None:
        """Vote with the raw correspondences (a :class:`~densematch.matchers.base.Matches`) of one pair."""
        if self._keypoints is not None:
            raise RuntimeError("add() after features(): create a new aggregator for new pairs")
        keep = np.isfinite(matches.scores) & (matches.scores >= self.config.min_score)
        keep &= np.isfinite(matches.kpts0).all(1) & np.isfinite(matches.kpts1).all(1)
        weights = np.maximum(matches.scores[keep], 1e-6)
        self._grid(name0, matches.size0).add(matches.kpts0[keep], weights)
        self._grid(name1, matches.size1).add(matches.kpts1[keep], weights)

    def features(self) -> dict[str, ImageFeatures]:
        """Choose the keypoints of every image seen by :meth:`add` (name -> :class:`ImageFeatures`)."""
        if self._keypoints is None:
            self._keypoints = {name: self._choose(votes) for name, votes in self._votes.items()}
        return {
            name: ImageFeatures(kp.uv, kp.scores, kp.grid.size)
            for name, kp in sorted(self._keypoints.items())
        }

    def _choose(self, votes: _Votes) -> _Keypoints:
        grid = votes.grid
        ids, weight, wu, wv = votes.compact()
        cell = ids // grid.sub**2
        order = np.lexsort((ids, -weight, cell))  # per cell: largest vote first, ties to the lower bin id
        first = np.ones(len(order), bool)
        first[1:] = cell[order][1:] != cell[order][:-1]
        win = order[first]
        uv = np.stack([wu[win] / weight[win], wv[win] / weight[win]], axis=1)
        scores, cells = weight[win], cell[win]
        limit = self.config.max_keypoints
        if limit is not None and len(win) > limit:
            keep = np.sort(np.lexsort((cells, -scores))[:limit])  # strongest, then back to raster order
            uv, scores, cells = uv[keep], scores[keep], cells[keep]
        lookup = np.full(grid.rows * grid.cols, -1, np.int64)
        lookup[cells] = np.arange(len(cells))
        return _Keypoints(grid, uv.astype(np.float32).astype(np.float64), scores, lookup)

    def assign(self, name0: str, name1: str, matches) -> PairMatches:
        """hloc ``matches0`` of one pair: its raw correspondences snapped to the chosen keypoints."""
        if self._keypoints is None:
            self.features()
        kp0, kp1 = self._keypoints[name0], self._keypoints[name1]
        keep = np.isfinite(matches.scores) & (matches.scores >= self.config.min_score)
        ids0 = np.where(keep, kp0.assign(np.nan_to_num(matches.kpts0), self.config.max_error), -1)
        ids1 = np.where(keep, kp1.assign(np.nan_to_num(matches.kpts1), self.config.max_error), -1)
        valid = np.flatnonzero((ids0 >= 0) & (ids1 >= 0))
        pairs = np.stack([ids0[valid], ids1[valid]], axis=1)
        scores = matches.scores[valid]
        keep = one_to_one(pairs, scores)
        return PairMatches.from_indices(pairs[keep], scores[keep], len(kp0.uv))


def one_to_one(pairs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of the matches that are the best-scoring one for both of their keypoints.

    ``pairs`` ``(M, 2)`` keypoint indices, ``scores`` ``(M,)``. Ties go to the earlier match. Returns
    sorted indices into ``pairs``.
    """
    if len(pairs) == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((np.arange(len(pairs)), -scores))  # best first
    best = np.ones(len(pairs), bool)
    for column in (0, 1):
        _, first = np.unique(pairs[order, column], return_index=True)
        winner = np.zeros(len(pairs), bool)
        winner[order[first]] = True
        best &= winner
    return np.flatnonzero(best)
