"""Running the matching work in this process or on several Ray workers, with identical results.

The work is cut into *chunks* (a few images or pairs) whose contents depend only on the input lists,
never on the number of workers. Every worker builds its own matcher from a
:class:`~densematch.sfm.workers.MatcherSpec`; chunks go to whichever worker is free, and the driver
receives the results **in chunk order**, so the files written from them are the same for 1 or N workers.

With ``workers > 1`` the optional package ``ray`` is imported (only then) and either connects to a
running cluster (``address``, or the ``RAY_ADDRESS`` environment variable) or starts a local one.
There is one worker per GPU when the cluster has GPUs, else one per CPU core requested. On a cluster
the image folder must be readable at the same path on every node.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DensematchError, require
from .workers import MatcherSpec, MatchWorker


class LocalExecutor:
    """Runs every chunk in this process, in order."""

    def __init__(self, spec: MatcherSpec, images_dir, batch_size: int = 1):
        self._args = (spec, str(images_dir), batch_size)
        self._worker: MatchWorker | None = None

    def map(self, method: str, chunks: Sequence, shared: tuple = ()) -> Iterator[list]:
        """Yield ``getattr(worker, method)(chunk, *shared)`` for each chunk, in order."""
        if self._worker is None:
            self._worker = MatchWorker(*self._args)
        for chunk in chunks:
            yield getattr(self._worker, method)(chunk, *shared)

    def share(self, mapping: Mapping[str, Any]) -> Mapping[str, Any]:
        return mapping

    def close(self) -> None:
        self._worker = None


class RayExecutor:
    """Runs chunks on ``workers`` Ray actors; results come back in chunk order.

    Args:
        address: Ray cluster address; None uses ``RAY_ADDRESS`` or starts a local Ray with
            ``workers`` CPUs (no dashboard). A Ray started here is shut down by :meth:`close`.
        in_flight: chunks queued per actor (keeps the actors busy while results are collected).
    """

    def __init__(
        self,
        spec: MatcherSpec,
        images_dir,
        workers: int,
        batch_size: int = 1,
        address: str | None = None,
        in_flight: int = 2,
    ):
        ray = require("ray", "distributed", "matching with --workers > 1")
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or None
            options = {"configure_logging": False, "log_to_driver": False}
            if not address:  # a local Ray just for this run
                options.update(num_cpus=workers, include_dashboard=False)
                options["runtime_env"] = {"env_vars": _pythonpath_env()}
            ray.init(address=address, **options)
            self._started = True
        gpus = int(ray.cluster_resources().get("GPU", 0))
        wants_gpu = spec.device is None or spec.device.startswith("cuda")
        use_gpu = gpus > 0 and wants_gpu
        if wants_gpu and spec.device is not None and workers > gpus:
            self.close()
            raise DensematchError(
                f"--workers {workers} with --device {spec.device} needs one GPU per worker, "
                f"but the Ray cluster has {gpus}"
            )
        if use_gpu and workers > gpus:
            self.close()
            raise DensematchError(
                f"--workers {workers} asks for one GPU per worker, but the Ray cluster has "
                f"{gpus}; use --workers {gpus} (or --device cpu)"
            )
        resources = {"num_gpus": 1} if use_gpu else {"num_cpus": 1}
        actor = ray.remote(**resources)(MatchWorker)
        self._actors = [actor.remote(spec, str(images_dir), batch_size, True) for _ in range(workers)]
        self._in_flight = max(1, int(in_flight))
        try:
            for ref in [worker.ready.remote() for worker in self._actors]:
                _get(ray, ref)
        except BaseException:
            self.close()
            raise

    def share(self, mapping: Mapping[str, Any]) -> dict[str, Any]:
        """Put each value in the object store once; workers fetch only the ones their chunks need."""
        return {key: self._ray.put(value) for key, value in mapping.items()}

    def map(self, method: str, chunks: Sequence, shared: tuple = ()) -> Iterator[list]:
        """Yield ``worker.method(chunk, *shared)`` for each chunk, in chunk order, computed on any actor."""
        ray = self._ray
        shared = tuple(ray.put(value) for value in shared)  # sent once, resolved by Ray in each call
        pending: dict = {}  # object ref -> (chunk index, actor)
        finished: dict[int, list] = {}
        free = [actor for actor in self._actors for _ in range(self._in_flight)]
        submitted = delivered = 0
        limit = 2 * self._in_flight * len(self._actors)  # bound on results held for in-order delivery
        while delivered < len(chunks):
            while free and submitted < len(chunks) and submitted - delivered < limit:
                actor = free.pop(0)
                ref = getattr(actor, method).remote(chunks[submitted], *shared)
                pending[ref] = (submitted, actor)
                submitted += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index, actor = pending.pop(ref)
                finished[index] = _get(ray, ref)
                free.append(actor)
            while delivered in finished:
                yield finished.pop(delivered)
                delivered += 1

    def close(self) -> None:
        for actor in getattr(self, "_actors", []):
            self._ray.kill(actor)
        self._actors = []
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


def _get(ray, ref):
    """``ray.get`` that re-raises a worker's densematch error as itself (clear message on the CLI)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, DensematchError):
            raise cause from None
        raise


def _pythonpath_env() -> dict[str, str]:
    """Make the densematch being run importable in local Ray workers (also when it is not installed)."""
    root = str(Path(__file__).resolve().parents[2])
    paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def make_executor(
    spec: MatcherSpec, images_dir, workers: int = 1, batch_size: int = 1, address: str | None = None
):
    """A :class:`LocalExecutor` for one worker, a :class:`RayExecutor` for more."""
    if workers < 1:
        raise DensematchError(f"--workers must be at least 1, got {workers}")
    if workers == 1:
        return LocalExecutor(spec, images_dir, batch_size)
    return RayExecutor(spec, images_dir, workers, batch_size, address)


def chunked(items: Sequence, size: int) -> list[list]:
    """Consecutive chunks of ``size`` items (the last one shorter)."""
    size = max(1, int(size))
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
