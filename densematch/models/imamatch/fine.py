"""Two-stage fine matching on the 1/2-resolution maps (upstream ``forward_test`` / ``forward_train``).

Step 1: 7x7 windows around the query and the reference start, window attention (``attn1``), similarity
``t0 t1^T / sqrt(C)`` (49 x 49); the regression head reads ``[t0 centre, t1 centre, sim centre row]`` and
predicts the offset / 3.5 (tanh). At inference with densification, a match survives only when the dual
softmax of that similarity puts more than 0.2 on centre-to-centre (the classification/regression
consistency check). Step 2: 3x3 windows around the rounded step-1 result, ``attn2``, regression of the
offset / 1.5 from ``[t0 centre, t1 centre, t0 centre . t1 / sqrt(C)]``; with ``iter_optimize`` five more
step-2 passes, each centred on the rounded running mean, and the mean of the six answers.

Windows are sampled with ``grid_sample(align_corners=True, padding_mode="zeros")`` at integer pixel
offsets ``-r .. r`` (x fastest); pixel ``x`` of a ``w``-wide map is ``x / (w - 1) * 2 - 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONSISTENCY_THRESHOLD = 0.2  # dual-softmax probability of the centre-to-centre entry


def regression_head(dim_in: int, ratio: int = 2) -> nn.Sequential:
    """Linear(d, 2d), LayerNorm, GELU, Linear(2d, 2), tanh: an offset in window radii."""
    hidden = dim_in * ratio
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, 2), nn.Tanh())


def window_offsets(side: int, device=None) -> torch.Tensor:
    """``(side^2, 2)`` integer offsets (x, y) ``-side//2 .. side//2`` as float, x fastest."""
    ys, xs = torch.meshgrid(torch.arange(side, device=device), torch.arange(side, device=device), indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2).float() - side // 2


def sample_windows(feature: torch.Tensor, centres: torch.Tensor, offsets: torch.Tensor,
                   batch_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Tokens ``(N, K, C)`` of ``feature (B, C, h, w)`` at ``centres (N, 2)`` + ``offsets (K, 2)`` (pixels).

    ``batch_ids (N,)`` says which map each centre belongs to (all map 0 when None).
    """
    _, c, h, w = feature.shape
    points = centres[:, None, :] + offsets[None]
    grid = torch.stack([points[..., 0] / (w - 1) * 2 - 1, points[..., 1] / (h - 1) * 2 - 1], dim=-1)
    if batch_ids is None:
        return F.grid_sample(feature[:1], grid[None], padding_mode="zeros", align_corners=True)[0].permute(1, 2, 0)
    tokens = grid.new_zeros(centres.shape[0], offsets.shape[0], c)
    for b in range(feature.shape[0]):
        sel = batch_ids == b
        if bool(sel.any()):
            sampled = F.grid_sample(feature[b : b + 1], grid[sel][None], padding_mode="zeros", align_corners=True)
            tokens[sel] = sampled[0].permute(1, 2, 0)
    return tokens


def step1(attn: nn.Module, head: nn.Module, t0: torch.Tensor, t1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``t0, t1 (N, K, C)`` -> (offset in radii ``(N, 2)``, similarity ``(N, K, K)``)."""
    t0, t1 = attn(t0, t1)
    mid = t0.shape[1] // 2
    sim = torch.einsum("nlc,nmc->nlm", t0, t1) / t0.shape[-1] ** 0.5
    return head(torch.cat([t0[:, mid], t1[:, mid], sim[:, mid]], dim=-1)), sim


def step2(attn: nn.Module, head: nn.Module, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
    """``t0, t1 (N, K, C)`` -> offset in radii ``(N, 2)``."""
    t0, t1 = attn(t0, t1)
    mid = t0.shape[1] // 2
    sim = torch.einsum("nc,nlc->nl", t0[:, mid], t1) / t0.shape[-1] ** 0.5
    return head(torch.cat([t0[:, mid], t1[:, mid], sim], dim=-1))


def dual_softmax(sim: torch.Tensor) -> torch.Tensor:
    return torch.softmax(sim, dim=1) * torch.softmax(sim, dim=2)


def refine(net: nn.Module, fq: torch.Tensor, fr: torch.Tensor, query: torch.Tensor, reference: torch.Tensor,
           check_consistency: bool, iter_optimize: bool, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Refine reference start points of ``query (N, 2)`` on the 1/2 maps ``fq, fr (1, C, h, w)``.

    ``net`` has ``attn1, attn2, regression1, regression2`` and ``window1, window2``. Returns
    ``(reference (N, 2) float, keep (N,) bool)``; ``keep`` is the consistency check (all True without it).
    """
    w1, w2 = net.window1, net.window2
    r1, r2 = w1 / 2, w2 / 2
    off1, off2 = window_offsets(w1, query.device), window_offsets(w2, query.device)
    moved, keep = [], []
    for s in range(0, query.shape[0], chunk):
        q, r = query[s : s + chunk], reference[s : s + chunk]
        pred, sim = step1(net.attn1, net.regression1, sample_windows(fq, q, off1), sample_windows(fr, r, off1))
        moved.append(r + pred * r1)
        if check_consistency:
            mid = sim.shape[1] // 2
            keep.append(dual_softmax(sim)[:, mid, mid] > CONSISTENCY_THRESHOLD)
    reference = torch.cat(moved) if moved else reference.clone()
    keep = torch.cat(keep) if keep else torch.ones(query.shape[0], dtype=torch.bool, device=query.device)
    query, reference = query[keep], reference[keep]
    if query.shape[0] == 0:
        return reference, keep

    centre = reference.round()
    t0 = sample_windows(fq, query, off2)
    reference = centre + step2(net.attn2, net.regression2, t0, sample_windows(fr, centre, off2)) * r2
    if iter_optimize:
        total = reference
        for i in range(5):
            centre = (total / (i + 1)).round()
            reference = centre + step2(net.attn2, net.regression2, t0, sample_windows(fr, centre, off2)) * r2
            total = total + reference
        reference = total / 6
    return reference, keep
