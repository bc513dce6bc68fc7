"""A preview sheet per synthetic pair: source view, rendered view, valid mask and sample correspondences.

Read back from the files a run wrote (so it shows exactly what training will see); written to
``OUT/previews/<pair id>.png``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ..geometry.warps import warp_from_depth
from ..viz import colormap, legend_bar, save_rgb
from . import store

PREVIEW_FOLDER = "previews"


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def preview_sheet(root, entry: dict, lines: int = 40, seed: int = 0) -> np.ndarray:
    """RGB sheet ``(BAR_HEIGHT + H, 4 W, 3)``: image0 | image1 | valid0 over image0 (holes of image1 in red
    on it) | image0 and image1 side by side with ``lines`` ground-truth correspondences, coloured by depth."""
    root = Path(root)
    image0, image1 = _read_rgb(root / entry["image0"]), _read_rgb(root / entry["image1"])
    valid0 = cv2.imread(str(root / entry["valid0"]), cv2.IMREAD_GRAYSCALE) > 0
    hole1 = cv2.imread(str(root / entry["hole1"]), cv2.IMREAD_GRAYSCALE) > 0
    depth0 = np.load(root / entry["depth0"])
    h, w = image0.shape[:2]
    mask = image0.copy()
    mask[~valid0] = (0.35 * mask[~valid0]).astype(np.uint8)
    rendered = image1.copy()
    rendered[hole1] = (0.5 * rendered[hole1] + [127, 0, 0]).astype(np.uint8)
    uv1, ok = warp_from_depth(torch.from_numpy(depth0).float(), torch.tensor(entry["K0"]).float(),
                              torch.tensor(entry["K1"]).float(), torch.tensor(entry["T_0to1"]).float(),
                              size1=(image1.shape[1], image1.shape[0]))
    ok = ok.numpy() & valid0
    rows, cols = np.nonzero(ok)
    pick = np.random.default_rng(seed).permutation(len(rows))[:lines]
    pair = np.concatenate((image0, image1), axis=1)
    if len(pick):
        depths = depth0[rows[pick], cols[pick]]
        span = np.ptp(depths) or 1.0
        colours = colormap((depths - depths.min()) / span)
        for (r, c), colour in zip(zip(rows[pick], cols[pick], strict=True), colours, strict=True):
            u1, v1 = uv1[r, c].numpy()
            p0, p1 = (int(c), int(r)), (int(round(u1)) + w, int(round(v1)))
            colour = tuple(int(x) for x in colour)
            cv2.line(pair, p0, p1, colour, 1, cv2.LINE_AA)
            cv2.circle(pair, p0, 3, colour, -1, cv2.LINE_AA)
            cv2.circle(pair, p1, 3, colour, -1, cv2.LINE_AA)
    panels = ((image0, f"{Path(entry['image0']).parent.name}: source view"),
              (rendered, "rendered view (red: holes, inpainted)"),
              (mask, f"valid0: {100 * valid0.mean():.0f}% covisible"),
              (pair, f"{len(pick)} ground-truth correspondences, colour = depth"))
    bars = [legend_bar(panel.shape[1], [(caption, None)]) for panel, caption in panels]
    return np.concatenate((np.concatenate(bars, axis=1), np.concatenate([p for p, _ in panels], axis=1)), axis=0)


def write_previews(root, pair_ids=None, progress: bool = False) -> int:
    """Write ``previews/<id>.png`` for every pair of ``root`` (or those in ``pair_ids``) that lacks one."""
    from tqdm import tqdm

    root = Path(root)
    entries = store.read_entries(root)
    todo = [pid for pid in (pair_ids if pair_ids is not None else sorted(entries))
            if pid in entries and not (root / PREVIEW_FOLDER / f"{pid}.png").is_file()]
    for pid in tqdm(todo, desc="previews", unit="pair", disable=not progress or not todo):
        save_rgb(root / PREVIEW_FOLDER / f"{pid}.png", preview_sheet(root, entries[pid]))
    return len(todo)
