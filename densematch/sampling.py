"""Balanced sampling of dense matches (RoMa's ``threshold_balanced``) without an N^2 kernel matrix.

RoMa samples ``4 * num`` candidates by certainty, estimates their local density with a Gaussian KDE on
the 4-D match vectors, and then samples ``num`` of them with probability ``1 / (density + 1)``, so that
textured regions do not get all the matches. romatch builds the full ``(4 num)^2`` kernel matrix in
fp16 (8 GB for num=10000); here the density is accumulated over row blocks, in float32, with the same
formula, so peak memory is ``block * 4 num`` floats and the distribution is the same (fp32 instead of
fp16 only removes rounding noise).
"""

from __future__ import annotations

import torch


def kde_density(x: torch.Tensor, std: float = 0.1, stride: int = 1, block: int = 1024) -> torch.Tensor:
    """``density_i = sum_j exp(-|x_i - x_j|^2 / (2 std^2))`` over ``x[::stride]``; ``x`` is ``(N, D)``."""
    x = x.float()
    ref = x[::stride]
    out = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    for start in range(0, x.shape[0], block):
        d2 = torch.cdist(x[start : start + block], ref).square_()
        out[start : start + block] = d2.mul_(-1.0 / (2 * std**2)).exp_().sum(dim=-1)
    return out


def _multinomial(weights: torch.Tensor, num: int, generator: torch.Generator | None) -> torch.Tensor:
    """Sample up to ``num`` indices without replacement; never more than there are positive weights."""
    num = min(num, int((weights > 0).sum()))
    if num == 0:
        return torch.zeros(0, dtype=torch.long, device=weights.device)
    if generator is not None and generator.device != weights.device:
        return torch.multinomial(weights.cpu(), num, replacement=False, generator=generator).to(weights.device)
    return torch.multinomial(weights, num, replacement=False, generator=generator)


def balanced_sample(
    matches: torch.Tensor,
    certainty: torch.Tensor,
    num: int = 10000,
    *,
    threshold: float | None = 0.05,
    balanced: bool = True,
    expansion: int = 4,
    std: float = 0.1,
    min_density: float = 10.0,
    kde_stride: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``num`` matches from a dense warp.

    Args:
        matches: ``(..., 4)`` match vectors ``(x0, y0, x1, y1)`` in normalised coordinates.
        certainty: ``(...)`` certainties in [0, 1], same leading shape.
        num: matches to return (fewer when fewer have positive certainty).
        threshold: certainties above it count as 1 (None: use them as they are).
        balanced: apply the KDE balancing step (else return the certainty-weighted candidates).
        expansion: candidates drawn per returned match before balancing.
        std, min_density: KDE bandwidth; candidates with density below ``min_density`` get weight 1e-7.
        kde_stride: estimate the density against every ``kde_stride``-th candidate (Tiny RoMa on CPU: 8).
        generator: a ``torch.Generator`` for reproducible sampling.

    Returns:
        ``(matches (M, 4), certainty (M,))`` with ``M <= num``.
    """
    weights = certainty.reshape(-1).float()
    matches = matches.reshape(-1, 4)
    if threshold is not None:
        weights = torch.where(weights > threshold, torch.ones_like(weights), weights)
    candidates = _multinomial(weights, (expansion if balanced else 1) * num, generator)
    good_matches, good_certainty = matches[candidates], weights[candidates]
    if not balanced or len(candidates) == 0:
        return good_matches, good_certainty
    density = kde_density(good_matches, std=std, stride=kde_stride)
    p = 1 / (density + 1)
    p[density < min_density] = 1e-7
    chosen = _multinomial(p, num, generator)
    return good_matches[chosen], good_certainty[chosen]
