"""Finding, downloading and strictly loading checkpoints.

``weights`` arguments everywhere accept: ``None`` (the published file: from the torch hub cache, else a
verified copy shipped inside an installed package, else downloaded once into the cache), a path to a local
file, or an already loaded state dict.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import urllib.error
import urllib.request
import zipfile
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
    """The local path of a published file, in this order: the torch hub cache, a sha256-verified copy
    inside an installed package that ships it (``spec.packaged``), else a download into the cache.

    Raises :class:`WeightsError` naming the file, its URL and how to pass a local path when the
    file is not cached, not packaged and cannot be downloaded (e.g. offline).
    """
    target = cache_dir() / spec.file_name
    if target.is_file():
        return target
    errors = []
    for location in spec.packaged:
        try:
            return packaged_file(location, spec.sha256)
        except (FileNotFoundError, ValueError) as exc:
            errors.append(f"{location}: {exc}")
    if download:
        for url in (spec.url, *spec.mirrors):
            try:
                _download(url, target, spec.sha256, timeout)
                return target
            except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
    else:
        errors.append("downloading disabled")
    packages = ", ".join(sorted({location.split(":")[0] for location in spec.packaged}))
    install = f" or install the package that ships it ({packages})" if packages else ""
    raise WeightsError(
        f"the {what} weights '{spec.file_name}' are not in the cache ({target}) and could not be obtained "
        f"from {spec.url} ({'; '.join(errors)}). Download the file yourself and pass its path, e.g. "
        f"{argument}='/path/to/{spec.file_name}' (or --{argument.replace('_', '-')} on the command line), "
        f"copy it to {target}{install}."
    )


def argument_name(role: str) -> str:
    """The keyword argument of a model factory that takes the weights of ``role``: ``weights`` for the
    main file ("matcher"), ``<role>_weights`` otherwise (``dinov2_weights``)."""
    return "weights" if role == "matcher" else f"{role}_weights"


def fetch_all(files: Mapping[str, WeightFile], given: Mapping[str, object], *, what: str,
              download: bool = True, note: str = "") -> dict[str, object]:
    """Check every weight file of a model before anything is built, and report all problems at once.

    ``files`` maps roles to published files, ``given`` roles to what the user passed (None: published).
    Returns role -> local path (or the given state dict). Raises one :class:`WeightsError` listing each
    missing file with its URL (and ``note``, where the authors keep files code cannot fetch).
    """
    found, problems = {}, []
    for role in dict.fromkeys([*files, *given]):
        source, spec = given.get(role), files.get(role)
        flag = "--" + argument_name(role).replace("_", "-")
        if source is False or isinstance(source, Mapping):
            found[role] = source
        elif source is not None:
            if Path(source).is_file():
                found[role] = Path(source)
            else:
                problems.append(f"{flag} {source}: file not found")
        elif spec is None:
            problems.append(f"{role}: no published file; pass {flag}")
        else:
            try:
                found[role] = cached_file(spec, what=f"{what} {role}", download=download,
                                          argument=argument_name(role))
            except WeightsError:
                problems.append(f"{role} '{spec.file_name}' not in {cache_dir()} and not downloadable from "
                                f"{spec.url} (pass {flag} FILE)")
    if problems:
        extra = f"; {note}" if note else ""
        raise WeightsError(f"{what}: {len(problems)} weight file(s) missing: " + "; ".join(problems) + extra)
    return found


def packaged_file(location: str, sha256: str | None) -> Path:
    """The path of ``"package:relative/path"`` inside an installed package, without importing the package.

    Raises ``FileNotFoundError`` when the package or the file is absent, ``ValueError`` when the file's
    sha256 differs from ``sha256`` (e.g. another version of the package).
    """
    package, _, relative = location.partition(":")
    if "." in package or not relative:
        raise ValueError(f"packaged location must be 'top_level_package:relative/path', got {location!r}")
    spec = importlib.util.find_spec(package)  # a top-level name: finds the package, runs none of its code
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / relative
        if path.is_file():
            digest = file_sha256(path)
            if sha256 is not None and digest != sha256:
                raise ValueError(f"{path} has sha256 {digest}, expected {sha256}")
            return path
    raise FileNotFoundError("package not installed" if spec is None else f"no {relative} in package {package}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, target: Path, sha256: str | None, timeout: float) -> None:
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "densematch"})
    digest = hashlib.sha256()
    with urllib.request.urlopen(request, timeout=timeout) as response, atomic_path(target) as tmp:
        total = int(response.headers.get("Content-Length") or 0) or None
        with open(tmp, "wb") as handle, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                             desc=f"download {target.name}", file=sys.stderr,
                                             disable=None, leave=False) as progress:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                handle.write(chunk)
                progress.update(len(chunk))
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
        try:  # memory-map zip checkpoints; legacy (pre-1.6, non-zip) files cannot be mapped
            source = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
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
