"""Fine-level ground truth at matched points: where a set of points lands, with the batch's geometry.

Pixels are OpenCV pixels of the batch's images (see :mod:`.supervision`). IMAMatch's fine stage works on
the 1/2-resolution map, whose pixel ``x`` is full-resolution pixel ``2 x`` (upstream's mapping: a stride-2
3x3 convolution with padding 1 centres output ``x`` on input ``2 x``).
"""

from __future__ import annotations

import torch

from .supervision import warp_points


def warp_matches(points: torch.Tensor, b_ids: torch.Tensor, batch: dict, reverse: bool = False,
                 rel_depth_tol: float | None = 0.2):
    """Warp points ``(M, 2)`` of image 0 (``reverse``: image 1), each of batch item ``b_ids (M,)``.

    Returns ``(uv (M, 2), valid (M,))`` in OpenCV pixels of the other image, or ``None`` when the batch
    cannot warp in that direction (see :func:`.supervision.warp_points`).
    """
    B = batch["image0"].shape[0]
    counts = torch.bincount(b_ids, minlength=B)
    slots = int(counts.max()) if len(b_ids) else 0
    order = torch.argsort(b_ids, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(b_ids)
    rank[order] = torch.arange(len(b_ids), device=b_ids.device) - starts[b_ids[order]]
    padded = points.new_zeros(B, max(slots, 1), 2)
    padded[b_ids, rank] = points.detach()
    result = warp_points(padded, batch, reverse=reverse, rel_depth_tol=rel_depth_tol)
    if result is None:
        return None
    uv, valid = result
    return uv[b_ids, rank], valid[b_ids, rank]
