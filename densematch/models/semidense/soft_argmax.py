"""Spatial soft-argmax of heatmaps with its spread (kornia's ``dsnt.spatial_expectation2d`` plus LoFTR's std).

Grid coordinates are normalised to ``[-1, 1]`` with the *outer* window entries at ``-1`` and ``1``
(``linspace(-1, 1, W)``, i.e. align_corners=True style), ``x`` along the width.
"""

from __future__ import annotations

import torch


def normalised_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(height * width, 2)`` ``(x, y)`` in ``[-1, 1]``, row-major."""
    ys = torch.linspace(-1, 1, height, device=device, dtype=dtype)
    xs = torch.linspace(-1, 1, width, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).reshape(-1, 2)


def spatial_expectation(heatmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected position and spread of probability maps.

    Args:
        heatmap: ``(M, H, W)``, each map summing to 1.
    Returns:
        ``coords (M, 2)``: expected ``(x, y)`` in ``[-1, 1]``; ``std (M,)``: ``sqrt(var_x) + sqrt(var_y)``
        (variances clamped at 1e-10 for a finite gradient).
    """
    m, h, w = heatmap.shape
    grid = normalised_grid(h, w, heatmap.device, heatmap.dtype)
    flat = heatmap.reshape(m, h * w)
    coords = torch.stack([(grid[:, 0] * flat).sum(-1), (grid[:, 1] * flat).sum(-1)], dim=-1)
    var = torch.sum(grid[None] ** 2 * flat[..., None], dim=1) - coords ** 2
    std = torch.sum(torch.sqrt(torch.clamp(var, min=1e-10)), -1)
    return coords, std
