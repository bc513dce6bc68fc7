"""Coarse matches -> fine queries at 1/2 resolution, with "increased matching amount" (densification).

A coarse cell ``c`` covers the 1/2-resolution pixels ``4c .. 4c + 3``. The query starts at ``4c + 1``,
the reference at ``4c + rplus``. With ``add_matches`` in {4, 9, 16}, every match whose confidence is
below ``high_threshold`` is replaced by sub-queries at ``4c + o`` for the offsets ``o`` of a grid
({1, 2}^2, {0, 1, 2}^2 or {0..3}^2, x fastest) that share the reference start; the confident matches
keep one query at ``4c + 1`` and come after all sub-queries, as upstream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import ConfigError
from .coarse import CoarseMatches

_GRIDS = {4: (1, 2), 9: (0, 3), 16: (0, 4)}  # first offset, side


def subquery_offsets(add_matches: int, device=None) -> torch.Tensor:
    """``(add_matches, 2)`` float offsets (x, y) of the sub-queries in 1/2-resolution pixels."""
    if add_matches not in _GRIDS:
        raise ConfigError(f"add_matches must be one of 4, 9, 16 to densify, got {add_matches}")
    start, side = _GRIDS[add_matches]
    ys, xs = torch.meshgrid(torch.arange(side, device=device), torch.arange(side, device=device), indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2).float() + start


@dataclass
class FineQueries:
    """Queries and reference start points at 1/2 resolution (pixels, x y), one row per fine match."""

    query: torch.Tensor  # (M, 2)
    reference: torch.Tensor  # (M, 2)
    confidence: torch.Tensor  # (M,) coarse confidence (copied to every sub-query)
    densified: torch.Tensor  # (M,) bool: a sub-query of a low-confidence match


def fine_queries(coarse: CoarseMatches, add_matches: int, high_threshold: float, rplus: float) -> FineQueries:
    """Upstream's mapping of coarse matches to 1/2 resolution and their densification."""
    query = coarse.query.float() * 4
    reference = coarse.reference.float() * 4 + rplus
    conf = coarse.confidence
    if add_matches <= 1:
        flags = torch.zeros_like(conf, dtype=torch.bool)
        return FineQueries(query + 1, reference, conf, flags)
    low = conf < high_threshold
    offsets = subquery_offsets(add_matches, query.device)
    n = int(low.sum())
    sub_query = (query[low][:, None, :] + offsets).reshape(-1, 2)
    sub_reference = reference[low][:, None, :].expand(n, add_matches, 2).reshape(-1, 2)
    sub_conf = conf[low][:, None].expand(n, add_matches).reshape(-1)
    return FineQueries(
        torch.cat([sub_query, query[~low] + 1]),
        torch.cat([sub_reference, reference[~low]]),
        torch.cat([sub_conf, conf[~low]]),
        torch.cat([torch.ones_like(sub_conf, dtype=torch.bool), torch.zeros_like(conf[~low], dtype=torch.bool)]),
    )
