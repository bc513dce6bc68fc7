"""Coarse matching at 1/8: dual-softmax confidence, mutual nearest neighbours, one-to-many selection.

Cells are indexed row-major (``index = y * w + x``); coordinates are ``(x, y)`` in cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..semidense.coarse_matching import similarity
from .direction import key_area_inliers, reverse_from_inliers


def coarse_similarity(feat0: torch.Tensor, feat1: torch.Tensor, temperature: float,
                      mask0: torch.Tensor | None = None, mask1: torch.Tensor | None = None) -> torch.Tensor:
    """``feat0 (B, C, h0, w0)``, ``feat1 (B, C, h1, w1)`` -> scaled similarity ``(B, h0 w0, h1 w1)``.

    Features are scaled by ``1/sqrt(C)`` each, the similarity divided by ``temperature``. Optional validity
    masks ``(B, h, w)`` (padding, training only upstream) fill invalid pairs with -1e9.
    """
    m0 = None if mask0 is None else mask0.flatten(1)
    m1 = None if mask1 is None else mask1.flatten(1)
    return similarity(feat0.flatten(2).transpose(1, 2), feat1.flatten(2).transpose(1, 2), temperature, m0, m1)


def dual_softmax_confidence(feat0: torch.Tensor, feat1: torch.Tensor, temperature: float,
                            mask0: torch.Tensor | None = None, mask1: torch.Tensor | None = None) -> torch.Tensor:
    """Confidence ``(B, h0 w0, h1 w1)`` = ``softmax over dim 1 * softmax over dim 2`` of
    :func:`coarse_similarity` (same arguments)."""
    sim = coarse_similarity(feat0, feat1, temperature, mask0, mask1)
    return F.softmax(sim, 1) * F.softmax(sim, 2)


def cell_xy(index: torch.Tensor, width: int) -> torch.Tensor:
    """Row-major cell indices ``(N,)`` -> ``(N, 2)`` (x, y)."""
    return torch.stack([index % width, torch.div(index, width, rounding_mode="trunc")], dim=-1)


@dataclass
class CoarseMatches:
    """Coarse matches of one pair, in the chosen direction (query -> reference)."""

    query: torch.Tensor  # (N, 2) long, query cells (x, y); image 1 when reverse
    reference: torch.Tensor  # (N, 2) long, reference cells
    confidence: torch.Tensor  # (N,) dual-softmax confidence
    reverse: bool  # True: image 1 is the query
    mutual0: torch.Tensor  # (Nm, 2) long, the mutual nearest neighbours in image 0 ...
    mutual1: torch.Tensor  # (Nm, 2) ... and image 1 (what the direction RANSAC sees)
    inliers: torch.Tensor | None  # (Nm,) bool RANSAC inliers; None without allow_reverse


def select_coarse(conf: torch.Tensor, width: int, threshold: float, allow_reverse: bool) -> CoarseMatches | None:
    """Upstream ``forward_test``'s coarse selection for one pair, ``conf (1, L0, L1)``.

    Mutual nearest neighbours above ``threshold``; None when there is none. Without ``allow_reverse``
    these are the matches. With it, the key-area RANSAC decides the direction (None when it fails, as
    upstream returns no matches), and the matches become one-to-many: every reference cell keeps its
    best query cell above the threshold (``conf > t`` and maximal over the query axis).
    """
    above = conf > threshold
    best_over_0 = conf == conf.max(dim=1, keepdim=True).values  # per image-1 cell: its best image-0 cell
    best_over_1 = conf == conf.max(dim=2, keepdim=True).values  # per image-0 cell: its best image-1 cell
    mutual = above & best_over_0 & best_over_1
    _, i0, i1 = torch.where(mutual)
    if i0.numel() == 0:
        return None
    mutual0, mutual1 = cell_xy(i0, width), cell_xy(i1, width)
    if not allow_reverse:
        return CoarseMatches(mutual0, mutual1, conf[mutual], False, mutual0, mutual1, None)
    inliers = key_area_inliers(mutual0.float(), mutual1.float())
    if inliers is None:
        return None
    reverse = reverse_from_inliers(mutual0[inliers], mutual1[inliers])
    if reverse:
        keep = (above & best_over_1).transpose(1, 2)  # (1, L1, L0): each image-0 cell keeps its best image-1 cell
        confidence = conf.transpose(1, 2)[keep]
    else:
        keep = above & best_over_0
        confidence = conf[keep]
    _, iq, ir = torch.where(keep)
    return CoarseMatches(cell_xy(iq, width), cell_xy(ir, width), confidence, reverse, mutual0, mutual1, inliers)
