"""Square feature windows around points of a fine feature map (zero padded at the borders).

``gather_windows`` takes arbitrary integer centres (S2LD: the rounded detected keypoint);
``unfold_windows`` takes LoFTR's regular windows, one per coarse cell (``F.unfold`` with the cell stride).
Window entries are in row-major order (``dy`` outer, ``dx`` inner), so entry ``W*W // 2`` is the centre.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def window_offsets(size: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dx, dy)`` of the ``size * size`` window entries, each ``(size*size,)`` int64 in ``[-r, r]``."""
    r = size // 2
    d = torch.arange(-r, r + 1, device=device)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    return dx.reshape(-1), dy.reshape(-1)


def gather_windows(feat: torch.Tensor, b_ids: torch.Tensor, centres: torch.Tensor, size: int) -> torch.Tensor:
    """Windows of ``feat (B, C, H, W)`` centred on ``centres (M, 2)`` int64 pixel ``(x, y)`` of images ``b_ids (M,)``.

    Centres may lie up to ``size // 2`` pixels outside the map (those entries are zeros).
    Returns ``(M, size*size, C)``.
    """
    r = size // 2
    padded = F.pad(feat, (r, r, r, r)).permute(0, 2, 3, 1)  # (B, H + 2r, W + 2r, C)
    dx, dy = window_offsets(size, feat.device)
    xs = centres[:, 0:1] + r + dx
    ys = centres[:, 1:2] + r + dy
    return padded[b_ids[:, None], ys, xs]


def unfold_windows(feat: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """LoFTR windows: ``feat (B, C, H, W)`` -> ``(B, L, size*size, C)``, one window per stride step (padding
    ``size // 2``), windows in row-major order of their top-left step."""
    b, c = feat.shape[:2]
    unfolded = F.unfold(feat, kernel_size=(size, size), stride=stride, padding=size // 2)  # (B, C*ww, L)
    return unfolded.view(b, c, size * size, -1).permute(0, 3, 2, 1)
