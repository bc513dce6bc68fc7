"""Finding, downloading and strictly loading checkpoints.

``weights`` arguments everywhere accept: ``None`` (the published file, downloaded once into the
torch hub cache), a path to a local file, or an already loaded state dict.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from .errors import WeightsError
from .io import atomic_path
from .registry import WeightFile

StateDict = Mapping[str, torch.Tensor]


def cache_dir() -> Path:
    """Where downloaded checkpoints live: ``$TORCH_HOME/hub/checkpoints`` (torch's own cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_file(spec: WeightFile, *, what: str, download: bool = True, timeout: float = 60.0,
                argument: str = "weights") -> Path:
    """The local path of a published file, downloading it into the cache when needed.

    Raises :class:`WeightsError` naming the file, its URL and how to pass a local path when the
    file is not cached and cannot be downloaded (e.g. offline).
    """
    target = cache_dir() / spec.file_name
    if target.is_file():
        return target
    errors = []
    if download:
        for url in (spec.url, *spec.mirrors):
            try:
                _download(url, target, spec.sha256, timeout)
                return target
            except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
    tried = "; ".join(errors) if errors else "downloading disabled"
    raise WeightsError(
        f"the {what} weights '{spec.file_name}' are not in the cache ({target}) and could not be downloaded "
        f"from {spec.url} ({tried}). Download the file yourself and pass its path, e.g. {argument}='/path/to/"
        f"{spec.file_name}' (or --{argument.replace('_', '-')} on the command line), or copy it to {target}."
    )


def _download(url: str, target: Path, sha256: str | None, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "densematch"})
    digest = hashlib.sha256()
    with urllib.request.urlopen(request, timeout=timeout) as response, atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                handle.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ValueError(f"sha256 mismatch: got {digest.hexdigest()}, expected {sha256}")


def read_state_dict(source, *, what: str, spec: WeightFile | None = None, download: bool = True,
                    argument: str = "weights") -> dict:
    """Turn a ``weights`` argument (None, path or dict) into a flat CPU state dict.

    Training checkpoints of the form ``{"model": state_dict, ...}`` are unwrapped, and the prefixes
    named by ``spec.key_prefixes_to_strip`` are removed.
    """
    if source is None:
        if spec is None:
            raise WeightsError(f"no published {what} weights exist; pass weights= (a path or a state dict)")
        source = cached_file(spec, what=what, download=download, argument=argument)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise WeightsError(f"{what} weights file not found: {path}")
        try:
            source = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # pickle errors, truncated zip files, foreign formats
            raise WeightsError(f"cannot read {what} weights from {path}: {exc}") from exc
    if not isinstance(source, Mapping):
        raise WeightsError(f"{what} weights must be a path or a state dict, got {type(source).__name__}")
    state = source
    if "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    prefixes = spec.key_prefixes_to_strip if spec is not None else ()
    return {_strip(key, prefixes): value for key, value in state.items()}


def _strip(key: str, prefixes: Iterable[str]) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def load_strict(module: nn.Module, state: StateDict, *, what: str) -> None:
    """Load ``state`` into ``module`` and fail with a readable message on any mismatch.

    Missing, unexpected or mis-shaped keys are errors that name the key(s). BatchNorm
    ``num_batches_tracked`` counters may be absent (they are never used at inference).
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), e.g. {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {_few(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_few(shapes)}")
    if problems:
        raise WeightsError(
            f"the {what} checkpoint does not fit the model ({'; '.join(problems)}). "
            "Is it a checkpoint of another model?"
        )
    filled = dict(state)
    for key, value in expected.items():  # counters absent from the file keep the model's value
        filled.setdefault(key, value)
    module.load_state_dict(filled, strict=True)


def _few(items: list[str], n: int = 3) -> str:
    shown = ", ".join(f"'{k}'" for k in items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


# ``weights_status`` vocabulary, best first: a model is as available as its least available file
WEIGHT_STATES = ("none needed", "installed", "cached", "needs download", "manual download", "train it here")


def _file_status(spec: WeightFile, cache: Path) -> tuple[str, str]:
    cached = cache / spec.file_name
    if cached.is_file():
        return "cached", str(cached)
    if spec.url and "://" not in spec.url:  # shipped: "package:densematch/...", relative to the source tree
        relative = spec.url.removeprefix("package:")
        shipped = Path(relative) if Path(relative).is_absolute() else Path(__file__).resolve().parents[1] / relative
        return ("installed", str(shipped)) if shipped.is_file() else ("manual download", str(shipped))
    if spec.url:
        return "needs download", spec.url
    return "manual download", str(cached)


def weights_status(entry) -> tuple[str, str]:
    """How ready a registry entry's weights are, without touching the network: ``(status, where)``.

    ``status`` is one of :data:`WEIGHT_STATES`: "none needed" (no files, e.g. classical matchers),
    "installed" (shipped inside the package), "cached" (in :func:`cache_dir`), "needs download" (fetched
    from the URL on first use), "manual download" (code cannot fetch it; see ``entry.weights_note``),
    "train it here" (no published file but a training recipe). For several files the least available
    one decides; ``where`` is its local path or URL.
    """
    files = getattr(entry, "weights", {}) or {}
    if not files:
        if getattr(entry, "kind", "dense") == "classical":
            return "none needed", ""
        return ("train it here", "") if getattr(entry, "recipe", None) else ("manual download", "")
    cache = cache_dir()
    states = [_file_status(spec, cache) for spec in files.values()]
    return max(states, key=lambda state: WEIGHT_STATES.index(state[0]))
