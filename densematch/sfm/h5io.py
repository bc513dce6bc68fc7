"""hloc-compatible HDF5 files, written atomically.

``features.h5``: one group per image name (a ``/`` in a name makes nested groups, as in hloc)::

    keypoints    (N, 2) float32  OpenCV pixels of the stored image: the centre of the top-left pixel is
                                 (0, 0) (densematch.conventions). hloc's convention: its COLMAP import
                                 adds 0.5 because COLMAP puts (0, 0) at the pixel corner.
    scores       (N,)   float32  detector response (SIFT) or vote weight (dense keypoints)
    image_size   (2,)   int64    (width, height) of the stored image
    descriptors  (D, N) float32  only for detector-based matchers (SIFT: D = 128), hloc's (D, N) layout

``matches.h5``: one group per pair, ``name0/name1`` with every ``/`` inside a name replaced by ``-``
(hloc's ``names_to_pair``)::

    matches0          (N0,) int32    index of the matched keypoint of image1, -1 if unmatched
    matching_scores0  (N0,) float32  score of that match, 0 if unmatched

``dense_matches.h5`` (dense matchers only): the raw correspondences of each pair, before snapping::

    keypoints0, keypoints1  (M, 2) float32  OpenCV pixels
    scores                  (M,)   float32
    attrs image_size0, image_size1  (width, height)

Each file carries a JSON ``densematch`` attribute describing how it was made; resuming into a file
made differently is refused. Writers never modify a file in place: :class:`AtomicH5Appender` copies it,
appends to the copy and renames the copy over the original, so an interruption leaves either the old
or the new complete file.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import DensematchError
from ..io import atomic_path

FEATURES_FILE = "features.h5"
MATCHES_FILE = "matches.h5"
DENSE_MATCHES_FILE = "dense_matches.h5"
CONFIG_ATTR = "densematch"


def pair_key(name0: str, name1: str) -> str:
    """The group of a pair in ``matches.h5``: ``name0/name1``, each ``/`` inside a name -> ``-``."""
    return f"{name0.replace('/', '-')}/{name1.replace('/', '-')}"


@dataclass
class ImageFeatures:
    """Keypoints of one image, as stored in ``features.h5``."""

    keypoints: np.ndarray  # (N, 2) float32, OpenCV pixels
    scores: np.ndarray  # (N,) float32
    image_size: tuple[int, int]  # (width, height)
    descriptors: np.ndarray | None = None  # (D, N) float32 or None

    def __post_init__(self):
        self.keypoints = np.ascontiguousarray(self.keypoints, dtype=np.float32).reshape(-1, 2)
        self.scores = np.ascontiguousarray(self.scores, dtype=np.float32).reshape(-1)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if len(self.scores) != len(self.keypoints):
            raise ValueError(f"{len(self.keypoints)} keypoints but {len(self.scores)} scores")
        if self.descriptors is not None:
            self.descriptors = np.ascontiguousarray(self.descriptors, dtype=np.float32)
            if self.descriptors.ndim != 2 or self.descriptors.shape[1] != len(self.keypoints):
                raise ValueError(
                    f"descriptors must be (D, {len(self.keypoints)}), got {self.descriptors.shape}"
                )


@dataclass
class PairMatches:
    """Matches of one pair in hloc's ``matches0`` form."""

    matches0: np.ndarray  # (N0,) int32, -1 = unmatched
    scores0: np.ndarray  # (N0,) float32

    def __post_init__(self):
        self.matches0 = np.ascontiguousarray(self.matches0, dtype=np.int32).reshape(-1)
        self.scores0 = np.ascontiguousarray(self.scores0, dtype=np.float32).reshape(-1)
        if len(self.matches0) != len(self.scores0):
            raise ValueError(f"matches0 has {len(self.matches0)} entries but scores0 {len(self.scores0)}")

    @classmethod
    def from_indices(cls, indices: np.ndarray, scores: np.ndarray, num0: int) -> PairMatches:
        """From ``(M, 2)`` one-to-one index pairs and their scores; image 0 has ``num0`` keypoints."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1, 2)
        matches0 = np.full(num0, -1, np.int32)
        scores0 = np.zeros(num0, np.float32)
        matches0[indices[:, 0]] = indices[:, 1]
        scores0[indices[:, 0]] = scores
        return cls(matches0, scores0)

    def indices(self) -> tuple[np.ndarray, np.ndarray]:
        """``(M, 2)`` int64 index pairs ``(i0, i1)`` of the matched keypoints and their ``(M,)`` scores."""
        i0 = np.flatnonzero(self.matches0 >= 0)
        return np.stack([i0, self.matches0[i0].astype(np.int64)], axis=1), self.scores0[i0]


# ---------------------------------------------------------------------------------------------- reading


def _open(path, what: str) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise DensematchError(f"{what} file not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DensematchError(f"cannot read {what} file {path}: {exc}") from exc


def file_config(path) -> dict | None:
    """The JSON ``densematch`` attribute of an HDF5 file (None when the file or attribute is absent)."""
    if not Path(path).is_file():
        return None
    with _open(path, "HDF5") as handle:
        raw = handle.attrs.get(CONFIG_ATTR)
    return None if raw is None else json.loads(raw)


def check_config(path, expected: dict, hint: str) -> None:
    """Refuse to resume into ``path`` when it was written with a different configuration."""
    found = file_config(path)
    if found is not None and found != expected:
        changed = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        details = ", ".join(f"{k}: {found.get(k)!r} in the file vs {expected.get(k)!r} now" for k in changed)
        raise DensematchError(f"{path} was written with different settings ({details}); {hint}")


def list_feature_names(path) -> list[str]:
    """Names of the images in a ``features.h5`` (every group holding a ``keypoints`` dataset), sorted."""
    names = []

    def visit(name: str, obj) -> None:
        parent, _, leaf = name.rpartition("/")
        if leaf == "keypoints" and parent and isinstance(obj, h5py.Dataset):
            names.append(parent)

    with _open(path, "features") as handle:
        handle.visititems(visit)
    return sorted(names)


def read_features(path, name: str, with_descriptors: bool = False) -> ImageFeatures:
    with _open(path, "features") as handle:
        if name not in handle or "keypoints" not in handle[name]:
            raise DensematchError(f"image '{name}' has no keypoints in {path}")
        group = handle[name]
        scores = group["scores"][()] if "scores" in group else np.ones(len(group["keypoints"]), np.float32)
        descriptors = group["descriptors"][()] if with_descriptors and "descriptors" in group else None
        return ImageFeatures(group["keypoints"][()], scores, tuple(group["image_size"][()]), descriptors)


def list_pairs(path) -> list[tuple[str, str]]:
    """The pair groups ``(key0, key1)`` of a matches file (names with ``/`` replaced by ``-``), sorted."""
    if not Path(path).is_file():
        return []
    with _open(path, "matches") as handle:
        return sorted(
            (k0, k1)
            for k0, group in handle.items()
            if isinstance(group, h5py.Group)
            for k1 in group
            if isinstance(group[k1], h5py.Group)
        )


def has_pair(handle: h5py.File, name0: str, name1: str) -> bool:
    """Whether ``handle`` holds the pair in either order."""
    return pair_key(name0, name1) in handle or pair_key(name1, name0) in handle


def read_matches(path, name0: str, name1: str) -> tuple[np.ndarray, np.ndarray]:
    """``(M, 2)`` keypoint index pairs (image ``name0``, image ``name1``) and their scores.

    The pair may be stored in either order (as hloc's ``get_matches``); indices are swapped accordingly.
    """
    with _open(path, "matches") as handle:
        reverse = pair_key(name0, name1) not in handle
        key = pair_key(name1, name0) if reverse else pair_key(name0, name1)
        if key not in handle:
            raise DensematchError(f"the pair ({name0}, {name1}) is not in {path}")
        matches = PairMatches(handle[key]["matches0"][()], handle[key]["matching_scores0"][()])
    indices, scores = matches.indices()
    return (indices[:, ::-1].copy() if reverse else indices), scores


def read_dense_matches(handle: h5py.File, name0: str, name1: str):
    """The raw correspondences of a pair from an open ``dense_matches.h5``, as :class:`Matches`."""
    from ..matchers.base import Matches

    group = handle[pair_key(name0, name1)]
    return Matches(
        group["keypoints0"][()],
        group["keypoints1"][()],
        group["scores"][()],
        tuple(group.attrs["image_size0"]),
        tuple(group.attrs["image_size1"]),
    )


# ---------------------------------------------------------------------------------------------- writing


def write_features(handle: h5py.File, name: str, features: ImageFeatures) -> None:
    if name in handle:
        del handle[name]
    group = handle.create_group(name)
    group.create_dataset("keypoints", data=features.keypoints)
    group.create_dataset("scores", data=features.scores)
    group.create_dataset("image_size", data=np.array(features.image_size, dtype=np.int64))
    if features.descriptors is not None:
        group.create_dataset("descriptors", data=features.descriptors)


def write_matches(handle: h5py.File, name0: str, name1: str, matches: PairMatches) -> None:
    key = pair_key(name0, name1)
    if key in handle:
        del handle[key]
    group = handle.create_group(key)
    group.create_dataset("matches0", data=matches.matches0)
    group.create_dataset("matching_scores0", data=matches.scores0)


def write_dense_matches(handle: h5py.File, name0: str, name1: str, matches) -> None:
    """Store raw correspondences (a :class:`~densematch.matchers.base.Matches`) in float32."""
    key = pair_key(name0, name1)
    if key in handle:
        del handle[key]
    group = handle.create_group(key)
    group.create_dataset("keypoints0", data=np.asarray(matches.kpts0, np.float32))
    group.create_dataset("keypoints1", data=np.asarray(matches.kpts1, np.float32))
    group.create_dataset("scores", data=np.asarray(matches.scores, np.float32))
    group.attrs["image_size0"] = np.array(matches.size0, dtype=np.int64)
    group.attrs["image_size1"] = np.array(matches.size1, dtype=np.int64)


Writer = Callable[[h5py.File], None]


class AtomicH5Appender:
    """Collects writes to an HDF5 file and commits them atomically in batches (checkpoints).

    A commit copies the current file (if any) beside it, applies the pending writes to the copy and
    renames the copy over the file. Killing the process at any moment leaves the last committed file
    intact; at most the writes since the last commit are lost (and redone by a resumed run).

    Args:
        path: the HDF5 file.
        config: stored as the file's ``densematch`` JSON attribute.
        every: commit after this many pending writes ...
        seconds: ... or when this many seconds passed since the last commit, whichever comes first.
    """

    def __init__(self, path, config: dict, every: int = 256, seconds: float = 60.0):
        self.path = Path(path)
        self.config = config
        self.every = max(1, int(every))
        self.seconds = float(seconds)
        self._pending: list[Writer] = []
        self._last_commit = time.monotonic()

    def add(self, writer: Writer) -> None:
        self._pending.append(writer)
        if len(self._pending) >= self.every or time.monotonic() - self._last_commit >= self.seconds:
            self.commit()

    def commit(self) -> None:
        """Write the pending groups (a file with nothing to add is neither created nor rewritten)."""
        if not self._pending:
            return
        rewrite(self.path, self._pending, self.config, keep_existing=True)
        self._pending = []
        self._last_commit = time.monotonic()


def rewrite(path, writers: Iterable[Writer], config: dict, keep_existing: bool) -> None:
    """Apply ``writers`` to a copy of ``path`` (or to an empty file) and move the result into place."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if keep_existing and path.is_file():
            shutil.copyfile(path, tmp)
            mode = "a"
        else:
            mode = "w"
        with h5py.File(tmp, mode) as handle:
            handle.attrs[CONFIG_ATTR] = json.dumps(config, sort_keys=True)
            for writer in writers:
                writer(handle)
