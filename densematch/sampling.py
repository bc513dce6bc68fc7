"""Balanced sampling of dense matches (RoMa's ``threshold_balanced``) without an N^2 kernel matrix.

RoMa samples ``4 * num`` candidates by certainty, estimates their local density with a Gaussian KDE on
the 4-D match vectors, and then samples ``num`` of them with probability ``1 / (density + 1)``, so that
textured regions do not get all the matches. romatch builds the full ``(4 num)^2`` kernel matrix in
fp16 (8 GB for num=10000). Here the same density is computed in float32 (fp32 instead of fp16 only
removes rounding noise) and fast:

* candidates are put in Z-order (Morton order of a 32-level grid per dimension) and cut into blocks of
  ``block`` points; a pair of blocks whose bounding boxes are farther apart than the cut-off radius
  ``r`` is skipped. ``r`` is chosen so that everything skipped sums to less than ``tol`` (default
  1e-6) for every point: ``M * exp(-r^2 / (2 std^2)) = tol`` with ``M`` reference points, so the
  density is exact up to ``tol`` absolute (and float32 rounding, ~2e-5 relative; a block spread over
  more than 1 from its centre, i.e. sparse outliers, is computed in float64 so that the product's
  cancellation stays small);
* each kept block pair is one small matrix product of augmented vectors
  ``[2s q, 1, -s|q|^2] . [r, -s|r|^2, 1]`` (``s = 1 / (2 std^2)``, coordinates centred on the query
  block) that gives the exponent directly, column chunks small enough to stay in cache;
* exponents are clamped at -87 before ``exp``: results below float32's smallest normal number are
  denormal, and ``exp`` producing denormals runs ~15x slower on x86. The clamp changes a density by
  at most ``M * 1.6e-38``.

tests/test_sampling.py checks the density against a float64 evaluation of the formula and the
sampling distribution against one driven by the exact density (chi-square test over many draws).
"""

from __future__ import annotations

import contextlib
import math

import torch

_EXP_FLOOR = -87.0  # exp(-87) = 1.6e-38 is still a normal float32


def _morton_order(x: torch.Tensor, bits: int = 5) -> torch.Tensor:
    """Permutation that sorts the rows of ``x (N, D)`` along a Z-order curve of a ``2^bits`` grid."""
    lo, hi = x.amin(0), x.amax(0)
    q = ((x - lo) / (hi - lo).clamp_min(1e-12) * (2**bits - 1)).round_().long()
    key = torch.zeros(len(x), dtype=torch.long, device=x.device)
    for b in range(bits):
        for d in range(x.shape[1]):
            key |= ((q[:, d] >> b) & 1) << (b * x.shape[1] + d)
    return torch.argsort(key)


def _blocks(x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Z-ordered ``x`` cut into ``(nb, block, D)`` blocks (padded with the last point) and the order."""
    order = _morton_order(x)
    nb = -(-len(x) // block)
    padded = torch.cat((x[order], x[order[-1:]].expand(nb * block - len(x), x.shape[1])))
    return padded.view(nb, block, x.shape[1]), order


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device):
    """Run small CPU ops on one thread (restored afterwards): OpenMP fork/join around ~0.3 ms ops costs
    more than it gains, 20-40x more on a busy machine (measured, 2 threads at load 12)."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def kde_density(
    x: torch.Tensor, std: float = 0.1, stride: int = 1, block: int = 128, tol: float | None = 1e-6,
    chunk: int = 2048,
) -> torch.Tensor:
    """``density_i = sum_j exp(-|x_i - x_j|^2 / (2 std^2))`` over ``x[::stride]``; ``x`` is ``(N, D)``.

    Pairs farther apart than the radius where the remaining mass is below ``tol`` are skipped (see the
    module docstring); ``tol=None`` evaluates every pair. Returns ``(N,)`` float32. On CPU the
    computation runs on one thread (the torch thread count is restored afterwards).
    """
    with _one_cpu_thread(x.device):
        return _kde_density(x, std, stride, block, tol, chunk)


def _kde_density(x: torch.Tensor, std: float, stride: int, block: int, tol: float | None,
                 chunk: int) -> torch.Tensor:
    x = x.float()
    ref = x[::stride]
    n, m, dims = x.shape[0], ref.shape[0], x.shape[1]
    if n == 0 or m == 0:
        return torch.zeros(n, dtype=torch.float32, device=x.device)
    s = 1.0 / (2 * std**2)
    queries, q_order = _blocks(x, block)
    refs, _ = _blocks(ref, block)
    gap = (refs.amin(1)[None] - queries.amax(1)[:, None]).clamp_min(0) + (
        queries.amin(1)[:, None] - refs.amax(1)[None]
    ).clamp_min(0)
    near = torch.ones(gap.shape[:2], dtype=torch.bool, device=x.device)
    if tol is not None:
        near = gap.square().sum(-1) < math.log(max(m, 2) / tol) / s
    ref_is_real = (torch.arange(refs.shape[0] * block, device=x.device) < m).view(-1, block)
    out = torch.empty(queries.shape[0] * block, dtype=torch.float32, device=x.device)
    for i, q in enumerate(queries):
        centre = q.mean(0)
        q = q - centre
        if q.abs().max() > 1:  # a spread-out block (sparse points): float32 would cancel, use float64
            q, centre = q.double(), centre.double()
        q_aug = torch.cat((q * (2 * s), torch.ones_like(q[:, :1]), -s * q.square().sum(1, keepdim=True)), 1)
        cols = near[i].nonzero().squeeze(1)
        r = refs[cols].reshape(-1, dims).to(q.dtype) - centre
        r_norm = (-s * r.square().sum(1, keepdim=True)).masked_fill_(~ref_is_real[cols].reshape(-1, 1), -1e4)
        r_aug = torch.cat((r, r_norm, torch.ones_like(r_norm)), 1)
        acc = torch.zeros(block, dtype=q.dtype, device=x.device)
        for j in range(0, r_aug.shape[0], chunk):
            acc += torch.mm(q_aug, r_aug[j : j + chunk].T).clamp_min_(_EXP_FLOOR).exp_().sum(1)
        out[i * block : (i + 1) * block] = acc
    density = torch.empty(n, dtype=torch.float32, device=x.device)
    density[q_order] = out[:n]
    return density


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
