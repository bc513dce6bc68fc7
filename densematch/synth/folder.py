"""Running the data engine over a folder of images: resumable, one bad image skipped (and recorded),
optionally in several processes. The on-disk format is :mod:`densematch.synth.store`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DensematchError, InputShapeError, MissingDependencyError, WeightsError
from ..io import load_image
from . import store
from .engine import SynthEngine, SynthPair

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class RunSummary:
    """What :func:`run_folder` did."""

    written: int = 0
    skipped: int = 0  # pairs already complete from an earlier run
    failures: dict[str, str] = field(default_factory=dict)  # image file name -> reason
    index: Path | None = None


def list_images(folder) -> list[Path]:
    """The image files directly in ``folder`` (by suffix), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputShapeError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def run_folder(
    engine: SynthEngine,
    images,
    output,
    *,
    progress: bool = True,
    name: str | None = None,
    index_every: int = 50,
    workers: int = 1,
) -> RunSummary:
    """Generate ``pairs_per_image`` pairs for every image; skip pairs already complete in ``output``.

    Bad images (unreadable, wrong-size or all-unknown depth, no overlapping pose) are logged, recorded in
    ``failures.json`` and skipped. ``pairs.json`` is rewritten (atomically) every ``index_every`` images and
    at the end, also when interrupted. ``workers > 1`` processes images in that many forked processes (one
    torch thread each); the pairs are identical to a single-process run.
    """
    from tqdm import tqdm

    paths = list_images(images) if not isinstance(images, (list, tuple)) else [Path(p) for p in images]
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    store.remove_partial(output)
    entries = store.read_entries(output)
    summary = RunSummary()
    count = engine.config.pairs_per_image
    jobs = []
    for path in paths:
        todo = [i for i in range(count) if store.pair_id(path.stem, i) not in entries]
        summary.skipped += count - len(todo)
        if todo:
            jobs.append((path, todo))
    pool = None
    try:
        if workers > 1 and len(jobs) > 1:
            import multiprocessing

            pool = multiprocessing.get_context("fork").Pool(
                workers, initializer=_init_worker, initargs=(engine, output)
            )
            results = pool.imap(_worker_job, jobs)
        else:
            results = (_process_image(engine, output, path, todo) for path, todo in jobs)
        bar = tqdm(results, total=len(jobs), desc="synth", unit="img", disable=not progress)
        for number, (path, new_entries, reason) in enumerate(bar, start=1):
            entries.update(new_entries)
            summary.written += len(new_entries)
            if reason is not None:
                summary.failures[path.name] = reason
                log.warning("skipping %s: %s", path.name, reason)
            if number % index_every == 0:
                store.write_index(output, entries, name or output.name)
    finally:
        if pool is not None:
            pool.terminate()
        summary.index = store.write_index(output, entries, name or output.name)
        store.write_failures(output, summary.failures)
    return summary


def _process_image(engine: SynthEngine, output: Path, path: Path, todo: list[int]):
    """Synthesise and write the pairs ``todo`` of one image -> (path, {pair id: entry}, failure or None)."""
    written = {}
    try:
        image = np.asarray(load_image(path))
        for pair in engine.pairs_for_image(path.stem, image, indices=todo):
            pid = store.pair_id(path.stem, pair.index)
            written[pid] = store.write_pair(output, pid, _arrays(pair), pair.entry())
    except (MissingDependencyError, WeightsError):
        raise
    except Exception as exc:  # noqa: BLE001 - one bad image must not abort a long run
        reason = str(exc) if isinstance(exc, DensematchError) else f"{type(exc).__name__}: {exc}"
        return path, written, reason
    return path, written, None


_WORKER: dict = {}  # per worker process: the engine and output folder (set by the pool initializer)


def _init_worker(engine: SynthEngine, output: Path) -> None:
    torch.set_num_threads(1)
    _WORKER["engine"], _WORKER["output"] = engine, output


def _worker_job(job):
    path, todo = job
    return _process_image(_WORKER["engine"], _WORKER["output"], path, todo)


def _arrays(pair: SynthPair) -> dict:
    return {
        "image0": pair.image0,
        "image1": pair.image1,
        "depth0": pair.depth0,
        "depth1": pair.depth1,
        "valid0": pair.valid0,
        "hole1": pair.hole1,
    }
