"""Matching an image collection along a pair list into hloc's ``features.h5`` / ``matches.h5``.

Keypoint matchers (``sift``)
    1. detect every image of the pair list once -> ``features.h5`` (keypoints, scores, descriptors);
    2. match the descriptors of every pair -> ``matches.h5`` (``matches0`` indexes those keypoints).
Dense matchers (RoMa family)
    1. match every pair -> raw correspondences in ``dense_matches.h5``;
    2. snap them to shared per-image keypoints (:mod:`densematch.sfm.keypoints`) -> ``features.h5``
       and ``matches.h5``, rewritten in full (a cheap CPU step) so they always cover the pair list.

Resuming: images and pairs already in the files are skipped (a pair counts in either order), so an
interrupted run continues where its last checkpoint was. Every file is replaced atomically at each
checkpoint (:class:`~densematch.sfm.h5io.AtomicH5Appender`). The output does not depend on the
number of workers (:mod:`densematch.sfm.executors`).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from ..errors import DensematchError, ImageReadError
from . import h5io
from .executors import chunked, make_executor
from .keypoints import DenseKeypointAggregator, GridConfig
from .pairs import Pair, check_pairs_against_images, list_images, unique_pairs, unreadable_images
from .workers import MatcherSpec

FORMAT_VERSION = 1
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchConfig:
    workers: int = 1  # processes (Ray actors when > 1): one per GPU, else one per CPU core
    ray_address: str | None = None  # existing Ray cluster; None = RAY_ADDRESS or a local Ray
    batch_size: int = 1  # pairs per model call for matchers with match_batch()
    chunk_size: int = 8  # pairs (or images) per unit of work handed to a worker
    checkpoint_every: int = 256  # commit the HDF5 files after this many new pairs or images ...
    checkpoint_seconds: float = 60.0  # ... or after this many seconds
    grid: GridConfig = field(default_factory=GridConfig)  # snapping of dense matches
    overwrite: bool = False  # start from empty files instead of resuming
    progress: bool = True  # tqdm progress bars (pairs/s) on stderr
    strict: bool = False  # a missing or corrupt image is an error (default: skip its pairs, report them)


@dataclass
class MatchOutputs:
    features: Path
    matches: Path
    num_images: int
    num_pairs: int
    num_new_pairs: int  # pairs matched by this run (the others were already in the files)
    seconds: float  # wall time of the matching step (pairs/s = num_new_pairs / seconds)
    skipped_images: dict[str, str] = field(default_factory=dict)  # name -> why (missing or corrupt)
    num_skipped_pairs: int = 0  # pairs left out because one of their images was skipped


def match_collection(
    images_dir, pairs: Sequence[Pair], output_dir, spec: MatcherSpec, config: MatchConfig = MatchConfig()
) -> MatchOutputs:
    """Match ``pairs`` of the images in ``images_dir`` into ``output_dir``/{features,matches}.h5."""
    images_dir, output_dir = Path(images_dir), Path(output_dir)
    pairs = unique_pairs(pairs)
    if not pairs:
        raise DensematchError("the pair list is empty")
    names = sorted({name for pair in pairs for name in pair})
    if config.strict:
        check_pairs_against_images(pairs, list_images(images_dir), images_dir)
    skipped = unreadable_images(images_dir, names)
    if skipped and config.strict:
        name, reason = next(iter(skipped.items()))
        raise ImageReadError(f"{len(skipped)} unreadable image(s) in {images_dir}, e.g. {name}: {reason}")
    if skipped:
        for name, reason in skipped.items():
            logger.warning("skipping image %s (%s) and its pairs", name, reason)
        kept = [pair for pair in pairs if pair[0] not in skipped and pair[1] not in skipped]
        num_skipped_pairs, pairs = len(pairs) - len(kept), kept
        if not pairs:
            shown = "; ".join(f"{name}: {reason}" for name, reason in list(skipped.items())[:3])
            raise ImageReadError(f"no pair is left: every pair names an unreadable image of {images_dir} ({shown})")
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {
        name: output_dir / name for name in (h5io.FEATURES_FILE, h5io.MATCHES_FILE, h5io.DENSE_MATCHES_FILE)
    }
    if config.overwrite:
        for path in files.values():
            path.unlink(missing_ok=True)
    kind = spec.resolved_kind
    run = _KeypointRun if kind == "keypoints" else _DenseRun
    outputs = run(images_dir, pairs, files, spec, config).run()
    if skipped:
        outputs.skipped_images, outputs.num_skipped_pairs = skipped, num_skipped_pairs
    return outputs


class _Run:
    def __init__(
        self,
        images_dir: Path,
        pairs: list[Pair],
        files: Mapping[str, Path],
        spec: MatcherSpec,
        config: MatchConfig,
    ):
        self.images_dir, self.pairs, self.files, self.spec, self.config = (
            images_dir,
            pairs,
            files,
            spec,
            config,
        )
        self.names = sorted({name for pair in pairs for name in pair})
        self.settings = {"format": FORMAT_VERSION, **spec.describe()}
        self._executor = None

    @property
    def executor(self):
        if self._executor is None:
            self._executor = make_executor(
                self.spec,
                self.images_dir,
                self.config.workers,
                self.config.batch_size,
                self.config.ray_address,
            )
        return self._executor

    def appender(self, path: Path, settings: dict) -> h5io.AtomicH5Appender:
        h5io.check_config(path, settings, "use another output folder or --overwrite")
        return h5io.AtomicH5Appender(
            path, settings, self.config.checkpoint_every, self.config.checkpoint_seconds
        )

    def todo_pairs(self, path: Path) -> list[Pair]:
        if not path.is_file():
            return list(self.pairs)
        with h5py.File(path, "r") as handle:
            return [pair for pair in self.pairs if not h5io.has_pair(handle, *pair)]

    def progress(self, total: int, unit: str, desc: str) -> tqdm:
        return tqdm(
            total=total,
            unit=unit,
            desc=desc,
            disable=not self.config.progress or total == 0,
            smoothing=0.1,
            dynamic_ncols=True,
        )

    def run_chunks(
        self,
        method: str,
        items: list,
        appender: h5io.AtomicH5Appender,
        write,
        unit: str,
        desc: str,
        shared: tuple = (),
    ) -> float:
        """Process ``items`` in chunks and write each result (committed even when interrupted); seconds."""
        start = time.perf_counter()
        if not items:
            return 0.0
        chunks = chunked(items, self.config.chunk_size)
        with self.progress(len(items), unit, desc) as bar:
            try:
                for chunk, results in zip(chunks, self.executor.map(method, chunks, shared), strict=True):
                    for item, result in zip(chunk, results, strict=True):
                        appender.add(write(item, result))
                    bar.update(len(chunk))
            finally:
                appender.commit()
        return time.perf_counter() - start

    def run(self) -> MatchOutputs:
        try:
            new_pairs, seconds = self.match()
        finally:
            if self._executor is not None:
                self._executor.close()
        return MatchOutputs(
            self.files[h5io.FEATURES_FILE],
            self.files[h5io.MATCHES_FILE],
            len(self.names),
            len(self.pairs),
            new_pairs,
            seconds,
        )

    def match(self) -> tuple[int, float]:
        raise NotImplementedError


class _KeypointRun(_Run):
    """Detector-based matchers: detect once per image, then match descriptors per pair."""

    def match(self) -> tuple[int, float]:
        features_path, matches_path = self.files[h5io.FEATURES_FILE], self.files[h5io.MATCHES_FILE]
        features = self.appender(features_path, self.settings)
        done = set(h5io.list_feature_names(features_path)) if features_path.is_file() else set()
        write = lambda name, result: lambda h: h5io.write_features(h, name, result)
        self.run_chunks(
            "detect", [n for n in self.names if n not in done], features, write, "image", "detect"
        )

        matches = self.appender(matches_path, self.settings)
        todo = self.todo_pairs(matches_path)
        needed = sorted({name for pair in todo for name in pair})
        descriptors = DescriptorStore(features_path, needed)
        shared = (self.executor.share(descriptors), descriptors.sizes) if todo else ()
        write = lambda pair, result: lambda h: h5io.write_matches(h, *pair, result)
        seconds = self.run_chunks("match_descriptors", todo, matches, write, "pair", "match", shared)
        return len(todo), seconds


class DescriptorStore(Mapping):
    """Read-only ``name -> (N, D)`` descriptors of a ``features.h5``, read on access (never all at once)."""

    def __init__(self, path: Path, names: Sequence[str]):
        self.path = path
        self.names = list(names)
        self.sizes: dict[str, int] = {}  # name -> number of keypoints
        if not self.names:
            return
        with h5py.File(path, "r") as handle:
            for name in self.names:
                group = handle[name]
                if "descriptors" not in group:
                    raise DensematchError(
                        f"image '{name}' has no descriptors in {path}; was it written by another "
                        "tool? Use another output folder or --overwrite"
                    )
                self.sizes[name] = len(group["keypoints"])

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.sizes:
            raise KeyError(name)
        with h5py.File(self.path, "r") as handle:
            return np.ascontiguousarray(handle[name]["descriptors"][()].T)

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


class _DenseRun(_Run):
    """Dense matchers: raw correspondences per pair, then snapping to shared keypoints."""

    def match(self) -> tuple[int, float]:
        raw_path = self.files[h5io.DENSE_MATCHES_FILE]
        raw = self.appender(raw_path, self.settings)
        todo = self.todo_pairs(raw_path)
        write = lambda pair, result: lambda h: h5io.write_dense_matches(h, *pair, result)
        seconds = self.run_chunks("match_dense", todo, raw, write, "pair", "match")
        self.snap(raw_path)
        return len(todo), seconds

    def snap(self, raw_path: Path) -> None:
        """Vote keypoints over all pairs of the list, then rewrite features.h5 and matches.h5 in full."""
        aggregator = DenseKeypointAggregator(self.config.grid)
        settings = {**self.settings, "grid": asdict(self.config.grid)}
        with h5py.File(raw_path, "r") as handle:
            for pair in tqdm(self.pairs, unit="pair", desc="vote", disable=not self.config.progress):
                aggregator.add(*pair, _stored_dense(handle, pair))
            features = aggregator.features()
            h5io.rewrite(
                self.files[h5io.FEATURES_FILE],
                (_feature_writer(name, feats) for name, feats in features.items()),
                settings,
                False,
            )
            writers = (
                _matches_writer(pair, aggregator.assign(*pair, _stored_dense(handle, pair)))
                for pair in tqdm(self.pairs, unit="pair", desc="assign", disable=not self.config.progress)
            )
            h5io.rewrite(self.files[h5io.MATCHES_FILE], writers, settings, False)


def _stored_dense(handle: h5py.File, pair: Pair):
    """Raw matches of ``pair`` as stored (float32), also when the file holds it in the other order."""
    name0, name1 = pair
    if h5io.pair_key(name0, name1) in handle:
        return h5io.read_dense_matches(handle, name0, name1)
    from ..matchers.base import Matches

    flipped = h5io.read_dense_matches(handle, name1, name0)
    return Matches(flipped.kpts1, flipped.kpts0, flipped.scores, flipped.size1, flipped.size0)


def _feature_writer(name: str, features: h5io.ImageFeatures):
    return lambda handle: h5io.write_features(handle, name, features)


def _matches_writer(pair: Pair, matches: h5io.PairMatches):
    return lambda handle: h5io.write_matches(handle, *pair, matches)


def summarize(outputs: MatchOutputs) -> OrderedDict:
    """A small dict for printing: counts, keypoints per image, matches per pair, pairs/s."""
    keypoints = []
    with h5py.File(outputs.features, "r") as handle:
        for name in h5io.list_feature_names(outputs.features):
            keypoints.append(len(handle[name]["keypoints"]))
    matched = []
    with h5py.File(outputs.matches, "r") as handle:
        for key0, key1 in h5io.list_pairs(outputs.matches):
            matched.append(int((handle[key0][key1]["matches0"][()] >= 0).sum()))
    rate = outputs.num_new_pairs / outputs.seconds if outputs.seconds > 0 else float("nan")
    return OrderedDict(
        images=outputs.num_images,
        pairs=outputs.num_pairs,
        new_pairs=outputs.num_new_pairs,
        mean_keypoints=float(np.mean(keypoints)) if keypoints else 0.0,
        mean_matches=float(np.mean(matched)) if matched else 0.0,
        pairs_per_second=rate,
    )
