"""Deterministic, resumable sampling of training batches.

Which pairs make up step ``k`` and how each is augmented are pure functions of ``(seed, k)``: stream
position ``p`` of a source is drawn from a permutation (or a weighted draw without replacement) seeded by
``(seed, source, chunk)``, and its augmentation uses a generator seeded by ``(seed, source, p)``. So a run
resumed at step ``k`` sees exactly the batches of an uninterrupted run, whatever the number of data
workers, and the global batch of a step is the same for any number of processes (each takes a slice).
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import ImageReadError

SampleKey = tuple[int, int, int]  # (source id, pair index within the source, stream position)


class ConcatPairs(Dataset):
    """Several pair datasets as one, with optional per-pair sampling weights.

    Datasets with a ``sample(index, rng)`` method get the generator; others are indexed plainly.
    """

    def __init__(self, datasets: Sequence[Dataset], weights: torch.Tensor | None = None):
        self.datasets = list(datasets)
        self.ends = np.cumsum([len(d) for d in self.datasets]).tolist()
        if weights is not None and len(weights) != len(self):
            raise ValueError(f"{len(weights)} sampling weights for {len(self)} pairs")
        self.weights = weights

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def sample(self, index: int, rng: np.random.Generator) -> dict:
        which = bisect.bisect_right(self.ends, index)
        local = index - (self.ends[which - 1] if which else 0)
        dataset = self.datasets[which]
        return dataset.sample(local, rng) if hasattr(dataset, "sample") else dataset[local]

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, np.random.default_rng(index))


def scene_weights(lengths: Sequence[int], alpha: float = 0.75) -> torch.Tensor:
    """Per-pair weights ``1 / n_scene^alpha`` (romatch ``weight_scenes``; RoMa trains with alpha = 0.75)."""
    return torch.cat([torch.full((n,), 1.0 / n**alpha, dtype=torch.float64) for n in lengths])


class PairStream:
    """An endless, seeded sequence of pair indices of one source.

    Without weights: consecutive random permutations of all pairs. With weights: chunks of ``chunk``
    pairs drawn without replacement with probability proportional to the weights (romatch redraws its
    ``WeightedRandomSampler`` every 25k pairs).
    """

    def __init__(
        self, size: int, seed: int, source: int, weights: torch.Tensor | None = None, chunk: int = 25_000
    ):
        if size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.size, self.seed, self.source = size, seed, source
        self.probabilities = None
        self.chunk = size
        if weights is not None:
            weights = weights.double().numpy()
            self.probabilities = weights / weights.sum()
            self.chunk = min(chunk, int((weights > 0).sum()))
        self._cached: tuple[int, np.ndarray] | None = None

    def __getitem__(self, position: int) -> int:
        chunk_id, offset = divmod(position, self.chunk)
        if self._cached is None or self._cached[0] != chunk_id:
            rng = np.random.default_rng([self.seed, self.source, chunk_id, 0x5A3])
            if self.probabilities is None:
                order = rng.permutation(self.size)
            else:
                # weighted draw without replacement via the Gumbel top-k trick
                with np.errstate(divide="ignore"):
                    keys = np.log(self.probabilities) + rng.gumbel(size=self.size)
                order = np.argsort(-keys, kind="stable")[: self.chunk]
            self._cached = (chunk_id, order)
        return int(self._cached[1][offset])


class StepBatches(Sampler):
    """The keys of this process's share of the batches of steps ``start .. stop - 1``.

    With several sources, step ``k`` uses source ``k % len(sources)`` (romatch alternates MegaDepth and
    ScanNet batches the same way); source ``s`` advances its stream only on its own steps.
    """

    def __init__(
        self,
        streams: Sequence[PairStream],
        batch_size: int,
        start: int,
        stop: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size % world_size:
            raise ValueError(f"the global batch size {batch_size} is not divisible by {world_size} processes")
        self.streams = list(streams)
        self.batch_size, self.start, self.stop = batch_size, start, stop
        self.share = batch_size // world_size
        self.rank = rank

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        count = len(self.streams)
        for step in range(self.start, self.stop):
            source = step % count
            first = (step // count) * self.batch_size + self.rank * self.share
            stream = self.streams[source]
            yield [(source, stream[p], p) for p in range(first, first + self.share)]


class TrainingPairs(Dataset):
    """Looks up :class:`StepBatches` keys in the sources, with the seeded augmentation generator.

    Adds ``source`` (int) to each sample so that the trainer can pick the source's loss, and ``skipped``: how
    many unreadable pairs (missing or corrupt image or map) were passed over to produce it. Without
    ``strict``, a pair that cannot be read is replaced by the next readable pair of the same source (a
    warning names the file); with ``strict`` the error stops the run.
    """

    MAX_SKIPS = 64  # consecutive unreadable pairs before giving up on a source

    def __init__(self, sources: Sequence[ConcatPairs], seed: int, strict: bool = False):
        self.sources = list(sources)
        self.seed = seed
        self.strict = strict

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def __getitem__(self, key: SampleKey) -> dict:
        source, index, position = key
        pairs = self.sources[source]
        for skipped in range(self.MAX_SKIPS + 1):
            rng = np.random.default_rng([self.seed, source, position, 0xA06])
            try:
                sample = dict(pairs.sample((index + skipped) % len(pairs), rng))
            except ImageReadError as exc:
                if self.strict or skipped == self.MAX_SKIPS:
                    raise
                warnings.warn(f"skipping an unreadable training pair: {exc}", stacklevel=2)
                continue
            sample["source"] = source
            sample["skipped"] = skipped
            return sample
        raise AssertionError("unreachable")


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed set before step ``step`` on process ``rank`` (model-side randomness, e.g. dropout)."""
    return int(np.random.SeedSequence([seed, step, rank, 0x70C]).generate_state(1, dtype=np.uint64)[0] >> 1)
