"""The prediction cache: matches (and dense warps) per pair, kept apart from the metrics.

Layout of ``OUT/predictions/``::

    config.json          what produced the predictions: matcher name, weights, num, seed, options,
                         the benchmark folder. A later run with a different configuration is refused
                         (``overwrite=True`` deletes the old predictions instead).
    <pair_id>.npz        kpts0 (N, 2), kpts1 (N, 2) float64 OpenCV pixels, scores (N,), size0, size1
                         (width, height), time_match_s; for dense matchers on pairs with dense ground
                         truth also warp (H0, W0, 2) float32 image-1 pixels, certainty (H0, W0) float16
                         and time_dense_s.

Re-running the metrics (another estimator, threshold, ...) reads these files and never runs the
matcher again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DensematchError
from ..io import atomic_path, atomic_write
from ..matchers.base import Matches, PairMatcher


class PredictionCacheError(DensematchError, RuntimeError):
    """The cached predictions are missing or were made with another configuration."""


@dataclass
class Prediction:
    """The output of a matcher for one pair (see the module docstring for shapes)."""

    matches: Matches
    time_match_s: float
    warp: np.ndarray | None = None
    certainty: np.ndarray | None = None
    time_dense_s: float | None = None

    @property
    def has_dense(self) -> bool:
        return self.warp is not None


def predict_pair(matcher: PairMatcher, image0, image1, dense: bool) -> Prediction:
    """Run ``matcher`` on one pair (and its dense warp when ``dense`` and the matcher is dense)."""
    start = time.perf_counter()
    if dense and matcher.is_dense:
        matches, field = matcher.match_pair_and_dense(image0, image1)  # one network run for both
    else:
        matches, field = matcher.match_pair(image0, image1), None
    prediction = Prediction(matches=matches, time_match_s=time.perf_counter() - start)
    if field is not None:
        prediction.time_dense_s = 0.0  # included in time_match_s: one network run gives both
        prediction.warp = np.asarray(field.warp, dtype=np.float32)
        prediction.certainty = np.asarray(field.certainty, dtype=np.float16)
    return prediction


class PredictionCache:
    """Per-pair ``.npz`` files under ``folder`` made by one matcher configuration.

    Args:
        folder: the cache folder (``OUT/predictions``).
        config: a JSON-serialisable description of everything that changes the predictions.
    """

    def __init__(self, folder, config: dict):
        self.folder = Path(folder)
        self.config = json.loads(json.dumps(config, default=str))  # normalise (tuples -> lists, paths -> str)

    @property
    def config_path(self) -> Path:
        return self.folder / "config.json"

    def prepare(self, overwrite: bool = False, read_only: bool = False) -> None:
        """Check (or write) ``config.json``.

        Raises :class:`PredictionCacheError` when the folder holds predictions of another
        configuration and ``overwrite`` is false, or when ``read_only`` and there is no cache.
        """
        if self.config_path.is_file():
            try:
                stored = json.loads(self.config_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise PredictionCacheError(f"cannot read {self.config_path}: {exc}") from None
            if stored == self.config:
                return
            if read_only or not overwrite:
                changed = sorted(
                    k for k in set(stored) | set(self.config) if stored.get(k) != self.config.get(k)
                )
                details = ", ".join(f"{k}: {stored.get(k)!r} -> {self.config.get(k)!r}" for k in changed)
                raise PredictionCacheError(
                    f"the predictions in {self.folder} were made with another configuration ({details}); "
                    "use another --output folder, or --overwrite to delete them"
                )
            for old in self.folder.glob("*.npz"):
                old.unlink()
        elif read_only:
            raise PredictionCacheError(
                f"no cached predictions in {self.folder}; run without --metrics-only first"
            )
        with atomic_write(self.config_path, "w") as handle:
            json.dump(self.config, handle, indent=2)

    def path(self, pair_id: str) -> Path:
        return self.folder / f"{pair_id}.npz"

    def load(self, pair_id: str, need_dense: bool = False) -> Prediction | None:
        """The cached prediction, or ``None`` when absent, unreadable or lacking a needed dense warp."""
        path = self.path(pair_id)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                matches = Matches(
                    data["kpts0"], data["kpts1"], data["scores"], tuple(data["size0"]), tuple(data["size1"])
                )
                prediction = Prediction(matches=matches, time_match_s=float(data["time_match_s"]))
                if "warp" in data.files:
                    prediction.warp = data["warp"]
                    prediction.certainty = data["certainty"]
                    prediction.time_dense_s = float(data["time_dense_s"])
        except (OSError, KeyError, ValueError, EOFError):
            return None  # a damaged file is recomputed
        if need_dense and not prediction.has_dense:
            return None
        return prediction

    def save(self, pair_id: str, prediction: Prediction) -> None:
        m = prediction.matches
        arrays = {
            "kpts0": m.kpts0,
            "kpts1": m.kpts1,
            "scores": m.scores,
            "size0": np.asarray(m.size0, dtype=np.int64),
            "size1": np.asarray(m.size1, dtype=np.int64),
            "time_match_s": np.float64(prediction.time_match_s),
        }
        if prediction.has_dense:
            arrays.update(
                warp=prediction.warp,
                certainty=prediction.certainty,
                time_dense_s=np.float64(prediction.time_dense_s),
            )
        with atomic_path(self.path(pair_id)) as tmp:
            np.savez_compressed(tmp, **arrays)
