"""The coordinate conventions of densematch, stated once.

Pixel coordinates (everywhere in densematch: ``Matches``, geometry, benchmarks, HDF5 export)
    ``(u, v)`` = (column, row), the OpenCV convention: the *centre* of the top-left pixel is
    ``(0, 0)``, so the image spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``. This is the convention
    of the ground truth in ``pairs.json`` files, of ``K`` matrices, of OpenCV and of hloc's
    ``features.h5``.

Normalised coordinates (model outputs: ``warp``)
    ``(x, y)`` in ``[-1, 1]`` with ``align_corners=False`` semantics, as in ``grid_sample``:
    pixel ``i`` of a row of length ``W`` has its centre at ``-1 + (2 i + 1) / W``; ``-1`` and ``+1``
    are the outer edges of the image. x (horizontal) comes first.

The single exception is kept for drop-in compatibility with upstream ``romatch``: the methods
``to_pixel_coordinates`` / ``to_normalized_coordinates`` on a RoMa model object return pixel
coordinates with the top-left *corner* at ``(0, 0)`` (pixel centres at ``i + 0.5``), exactly as
romatch does. Use :func:`normalized_to_pixel` here, or subtract 0.5, to get OpenCV pixels.

Two-view geometry
    ``T_0to1`` (4x4) maps camera-0 points into camera 1: ``X1 = R @ X0 + t``. ``H_0to1`` (3x3) maps
    image0 pixels to image1 pixels. Camera frames follow OpenCV (x right, y down, z forward).

Naming
    Suffix ``0``/``1`` for the two images (``A``/``B`` only in romatch-compatible methods, where
    A is image 0); ``-1`` marks an unmatched index.
"""

from __future__ import annotations

import numpy as np
import torch


def normalized_to_pixel(xy, width: int, height: int):
    """Normalised ``[-1, 1]`` coordinates (..., 2) -> OpenCV pixel coordinates (..., 2).

    Works on numpy arrays and torch tensors; returns the same type.
    """
    scale = _wh(xy, width, height)
    return (xy + 1) * scale / 2 - 0.5


def pixel_to_normalized(uv, width: int, height: int):
    """OpenCV pixel coordinates (..., 2) -> normalised ``[-1, 1]`` coordinates (..., 2)."""
    scale = _wh(uv, width, height)
    return (uv + 0.5) * 2 / scale - 1


def normalized_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """The normalised coordinates of every pixel centre, shape ``(height, width, 2)`` as ``(x, y)``."""
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=device, dtype=dtype)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1)


def _wh(ref, width: int, height: int):
    if isinstance(ref, torch.Tensor):
        return torch.tensor([width, height], dtype=ref.dtype, device=ref.device)
    return np.array([width, height], dtype=np.result_type(ref, np.float32))
