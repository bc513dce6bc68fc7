"""The on-disk format of a synthetic pair set, written safely and resumably.

Layout of an output folder ``OUT``::

    OUT/pairs.json                 index, in the convention of the shared data (type "relative_pose")
    OUT/pairs/<id>/image0.png      the prepared source view (RGB)
    OUT/pairs/<id>/image1.png      the rendered novel view (relit / inpainted)
    OUT/pairs/<id>/depth0.npy      float32 (H, W) depth of image0, same units as T_0to1, 0 = unknown
    OUT/pairs/<id>/depth1.npy      float32 (H, W) depth of image1 (0 in holes, sky and unknown regions)
    OUT/pairs/<id>/valid0.png      1-bit mask: image0 pixels covisible in image1, not holes (nonzero = valid)
    OUT/pairs/<id>/hole1.png       1-bit mask: image1 pixels without ground truth (holes, inpainted; nonzero)
    OUT/pairs/<id>/pair.json       this pair's entry of pairs.json
    OUT/failures.json              images that were skipped, and why

Every entry of ``pairs.json`` holds ``image0, image1, size0, size1, K0, K1, T_0to1, depth0, depth1, valid0,
hole1`` (paths relative to ``OUT``) plus a few statistics. The ground-truth warp of image0 is
``warp_from_depth(depth0, K0, K1, T_0to1)`` restricted to ``valid0``.

A pair is written into a temporary folder and renamed into place last, so a pair folder either is complete
or does not exist; ``pairs.json`` is rebuilt from the pair folders and replaced atomically.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageReadError
from ..io import atomic_write, make_temp_folder

INDEX_NAME = "pairs.json"
PAIRS_FOLDER = "pairs"
ENTRY_NAME = "pair.json"
FAILURES_NAME = "failures.json"
CONVENTION = (
    "OpenCV pixels (centre of the top-left pixel at (0, 0)); K0/K1 at the stored resolution; "
    "T_0to1 maps camera-0 points to camera 1 (X1 = R X0 + t); depth0/depth1 float32 .npy in the units of "
    "T_0to1, 0 = unknown; valid0/hole1 PNG masks (1-bit), nonzero = set; image0 is the source view, image1 "
    "the rendered novel view; GT warp = warp_from_depth(depth0, K0, K1, T_0to1) where valid0"
)
_TEMP_PREFIX = ".tmp-"


def pair_id(name: str, index: int) -> str:
    """The folder name of pair ``index`` of image ``name``."""
    return f"{name}_{index:03d}"


def is_complete(root, pid: str) -> bool:
    """Whether pair ``pid`` has been written completely."""
    return (Path(root) / PAIRS_FOLDER / pid / ENTRY_NAME).is_file()


def write_pair(root, pid: str, arrays: dict, entry: dict) -> dict:
    """Write one pair atomically and return its index entry.

    Args:
        root: the output folder.
        pid: the pair id (:func:`pair_id`).
        arrays: ``image0``, ``image1`` ``(H, W, 3)`` uint8 RGB; ``depth0``, ``depth1`` float32; ``valid0``,
            ``hole1`` bool.
        entry: the JSON fields besides the file paths (sizes, cameras, statistics).
    """
    root = Path(root)
    folder = root / PAIRS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / pid
    temp = make_temp_folder(folder, prefix=f"{_TEMP_PREFIX}{pid}.")
    try:
        files = {}
        for key in ("image0", "image1"):
            _write_png(temp / f"{key}.png", cv2.cvtColor(arrays[key], cv2.COLOR_RGB2BGR))
            files[key] = f"{key}.png"
        for key in ("depth0", "depth1"):
            np.save(temp / f"{key}.npy", np.ascontiguousarray(arrays[key], dtype=np.float32))
            files[key] = f"{key}.npy"
        for key in ("valid0", "hole1"):
            _write_png(temp / f"{key}.png", arrays[key].astype(np.uint8) * 255, bilevel=True)
            files[key] = f"{key}.png"
        full = {key: f"{PAIRS_FOLDER}/{pid}/{name}" for key, name in files.items()}
        full = {"id": pid, **full, **entry}
        (temp / ENTRY_NAME).write_text(json.dumps(full, indent=1))
        if final.exists():  # an earlier, incomplete attempt cannot exist (renames are atomic): replace
            shutil.rmtree(final)
        temp.rename(final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return full


def _write_png(path: Path, array: np.ndarray, bilevel: bool = False) -> None:
    options = [cv2.IMWRITE_PNG_COMPRESSION, 1] + ([cv2.IMWRITE_PNG_BILEVEL, 1] if bilevel else [])
    if not cv2.imwrite(str(path), array, options):
        raise OSError(f"cannot write {path}")


def remove_partial(root) -> int:
    """Delete temporary folders left by an interrupted run; returns how many."""
    folder = Path(root) / PAIRS_FOLDER
    count = 0
    if folder.is_dir():
        for temp in folder.glob(f"{_TEMP_PREFIX}*"):
            shutil.rmtree(temp, ignore_errors=True)
            count += 1
    return count


def read_entries(root) -> dict[str, dict]:
    """The entries of all complete pairs under ``root``, by pair id."""
    folder = Path(root) / PAIRS_FOLDER
    entries = {}
    if folder.is_dir():
        for path in sorted(folder.glob(f"*/{ENTRY_NAME}")):
            if path.parent.name.startswith(_TEMP_PREFIX):
                continue
            with contextlib.suppress(OSError, json.JSONDecodeError):
                entries[path.parent.name] = json.loads(path.read_text())
    return entries


def write_index(root, entries: dict[str, dict], name: str) -> Path:
    """Replace ``root/pairs.json`` atomically with the given entries (sorted by pair id)."""
    path = Path(root) / INDEX_NAME
    index = {
        "name": name,
        "type": "relative_pose",
        "convention": CONVENTION,
        "pairs": [entries[key] for key in sorted(entries)],
    }
    with atomic_write(path, "w") as handle:
        json.dump(index, handle, indent=1)
    return path


def write_failures(root, failures: dict[str, str]) -> Path:
    """Record the images that were skipped (image file name -> reason), atomically."""
    path = Path(root) / FAILURES_NAME
    with atomic_write(path, "w") as handle:
        json.dump(failures, handle, indent=1, sort_keys=True)
    return path


def read_index(root) -> dict:
    """Load ``root/pairs.json``."""
    path = Path(root) / INDEX_NAME
    if not path.is_file():
        raise ImageReadError(f"no {INDEX_NAME} in {root}: not a synthetic pair folder")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ImageReadError(f"{path} is not valid JSON: {exc}") from exc
