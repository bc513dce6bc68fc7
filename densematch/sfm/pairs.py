"""Image collections and pair lists in hloc's text format (``name0 name1`` per line).

Image *names* are paths relative to the image folder, with ``/`` as separator on every platform;
they are the keys of ``features.h5`` and the words of a pair list.

Pair generators return each unordered pair once, ``name0`` before ``name1`` in the collection's
(sorted) order, as hloc's ``pairs_from_exhaustive`` does; the order of the list is deterministic.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import DensematchError, ImageReadError
from ..io import atomic_write

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff", ".webp")

Pair = tuple[str, str]


def list_images(images_dir, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[str]:
    """Sorted names (relative paths with ``/``) of the image files below ``images_dir``, recursively.

    Hidden files and folders (starting with ``.``) are skipped. Raises :class:`ImageReadError` when the
    folder does not exist or holds no image.
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise ImageReadError(f"image folder not found: {root}")
    names = []
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for file in files:
            if not file.startswith(".") and file.lower().endswith(tuple(suffixes)):
                names.append((Path(folder) / file).relative_to(root).as_posix())
    if not names:
        raise ImageReadError(f"no image files ({', '.join(suffixes)}) found in {root}")
    return sorted(names)


def pairs_exhaustive(names: Sequence[str]) -> list[Pair]:
    """Every unordered pair once: ``n (n - 1) / 2`` pairs."""
    return [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))]


def pairs_sequential(names: Sequence[str], window: int, quadratic: bool = False) -> list[Pair]:
    """Each image with its ``window`` successors (for videos / ordered captures).

    With ``quadratic``, image ``i`` is also paired with ``i + 2**k`` for every ``2**k > window``
    (hloc's quadratic overlap), which links distant parts of a sequence cheaply.
    """
    if window < 1:
        raise DensematchError(f"the sequential window must be at least 1, got {window}")
    pairs = []
    n = len(names)
    for i in range(n):
        partners = list(range(i + 1, min(i + window + 1, n)))
        if quadratic:
            step = 1
            while i + step < n:
                if step > window:
                    partners.append(i + step)
                step *= 2
        pairs.extend((names[i], names[j]) for j in partners)
    return pairs


def pairs_from_descriptors(names: Sequence[str], descriptors: np.ndarray, k: int) -> list[Pair]:
    """Each image with its ``k`` most similar images under a global descriptor (dot product).

    Args:
        names: ``N`` image names.
        descriptors: ``(N, D)`` L2-normalised global descriptors, one row per name.
        k: neighbours per image; an image can end up in more than ``k`` pairs because the
            neighbour relation is not symmetric. Ties are broken by the collection order.
    """
    descriptors = np.asarray(descriptors, dtype=np.float64)
    if descriptors.ndim != 2 or len(descriptors) != len(names):
        raise DensematchError(f"expected ({len(names)}, D) descriptors, got shape {descriptors.shape}")
    if k < 1:
        raise DensematchError(f"the number of retrieved neighbours must be at least 1, got {k}")
    similarity = descriptors @ descriptors.T
    np.fill_diagonal(similarity, -np.inf)
    selected = set()
    for i in range(len(names)):
        order = np.lexsort((np.arange(len(names)), -similarity[i]))  # best first, ties by index
        for j in order[: min(k, len(names) - 1)]:
            selected.add((min(i, int(j)), max(i, int(j))))
    return [(names[i], names[j]) for i, j in sorted(selected)]


def read_pairs(path) -> list[Pair]:
    """Parse a pair list: ``name0 name1`` per line; blank lines and lines starting with ``#`` are skipped.

    Raises :class:`DensematchError` naming the file and line for a malformed line or a self-pair.
    """
    path = Path(path)
    if not path.is_file():
        raise DensematchError(f"pair list not found: {path}")
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            words = line.split()
            if len(words) != 2:
                raise DensematchError(
                    f"{path}:{number}: expected two image names separated by a space, got {line!r}"
                )
            if words[0] == words[1]:
                raise DensematchError(f"{path}:{number}: pairs an image with itself ({words[0]})")
            pairs.append((words[0], words[1]))
    return pairs


def write_pairs(path, pairs: Iterable[Pair]) -> Path:
    """Write a pair list atomically; names must not contain whitespace (hloc's format splits on it)."""
    lines = []
    for name0, name1 in pairs:
        for name in (name0, name1):
            if not name or any(c.isspace() for c in name):
                raise DensematchError(
                    f"image name {name!r} is empty or contains whitespace; "
                    "the pair-list format cannot represent it"
                )
        lines.append(f"{name0} {name1}\n")
    with atomic_write(path, "w") as handle:
        handle.writelines(lines)
    return Path(path)


def unique_pairs(pairs: Iterable[Pair]) -> list[Pair]:
    """Drop repeated pairs, including reversed repeats (``b a`` after ``a b``), keeping the first."""
    seen, result = set(), []
    for name0, name1 in pairs:
        key = (name0, name1) if name0 <= name1 else (name1, name0)
        if key not in seen:
            seen.add(key)
            result.append((name0, name1))
    return result


def check_pairs_against_images(pairs: Sequence[Pair], names: Iterable[str], images_dir) -> None:
    """Raise :class:`ImageReadError` listing pair-list names that are not images in ``images_dir``."""
    known = set(names)
    missing = sorted({name for pair in pairs for name in pair} - known)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ImageReadError(f"the pair list names images that are not in {images_dir}: {shown}")


def unreadable_images(images_dir, names: Iterable[str]) -> dict[str, str]:
    """``name -> reason`` for the images of ``names`` that are missing or whose file does not decode.

    Cheap: PIL reads the header and verifies the file structure without decoding the pixels, so a
    large collection is checked in seconds before hours of matching.
    """
    from PIL import Image

    images_dir, problems = Path(images_dir), {}
    for name in names:
        path = images_dir / name
        if not path.is_file():
            problems[name] = "file not found"
            continue
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as exc:  # PIL raises many types for corrupt files
            problems[name] = " ".join(f"{type(exc).__name__}: {exc}".split())
    return problems
