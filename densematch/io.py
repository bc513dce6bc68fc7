"""Reading images, with clear errors for missing or corrupt files, and atomic file writing."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageReadError


def load_image(source, mode: str = "RGB") -> Image.Image:
    """Open an image file (or pass a PIL image / uint8 array through) and convert it to ``mode``.

    Raises :class:`ImageReadError` naming the file when it is missing, unreadable or corrupt.
    16-bit greyscale files are scaled to 8 bit.
    """
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3):
            raise ImageReadError(f"expected a uint8 (H, W) or (H, W, 3) array, got {source.dtype} {source.shape}")
        image = Image.fromarray(source)
    elif isinstance(source, (str, os.PathLike)):
        with _open_file(source) as opened:
            opened.load()
            image = opened.copy()
    else:
        raise ImageReadError(f"cannot read an image from a {type(source).__name__}; pass a path or a PIL image")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = max(float(array.max()), 1.0)
        image = Image.fromarray(np.clip(array * (255.0 / top), 0, 255).astype(np.uint8))
    return image.convert(mode) if image.mode != mode else image


def image_size(source) -> tuple[int, int]:
    """``(width, height)`` of what :func:`load_image` accepts; of a file from its header, without decoding it
    (same errors as :func:`load_image`)."""
    if isinstance(source, Image.Image):
        return source.size
    if isinstance(source, (str, os.PathLike)):
        with _open_file(source) as image:
            return image.size
    return load_image(source).size


@contextlib.contextmanager
def _open_file(source):
    """``Image.open`` of a path, raising :class:`ImageReadError` naming it when missing, unreadable or corrupt."""
    path = Path(source)
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    try:
        with Image.open(path) as opened:
            yield opened
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def _file_mode(folder: bool = False) -> int:
    """The permissions ``open()`` (``mkdir()``) gives a new file (folder) under the current umask: ``0o644``
    (``0o755``) for umask 022. ``tempfile`` creates 0600 files and 0700 folders; atomic writes use this.
    """
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def make_temp_folder(parent, prefix: str) -> Path:
    """A new hidden folder in ``parent`` with the usual permissions (for writing a folder atomically)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, _file_mode(folder=True))
    return path


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Write to a temporary file beside ``path`` and move it into place only on success.

    An interrupted or failing writer never leaves a half-written ``path`` behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, _file_mode())
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` for libraries that write by file name (h5py, cv2, np.save).

    The temporary file is renamed to ``path`` only when the block succeeds. The temporary name keeps
    the suffix of ``path`` so that format-by-extension writers still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):  # writers may replace the file (h5py, np.savez): set the mode last
            os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
