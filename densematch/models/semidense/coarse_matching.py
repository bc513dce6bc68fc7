"""Dual-softmax coarse matching of LoFTR-family matchers.

Features of the two images (``(N, L, C)`` and ``(N, S, C)``, cells in row-major order) are each scaled by
``1 / sqrt(C)``; their similarity divided by a temperature gives ``conf = softmax_rows * softmax_cols``.
Matches are cells with ``conf > threshold``, not within ``border`` cells of the image border (of the valid,
unpadded region when padding masks are given; the top/left border always counts from the array edge, as
upstream), and mutual nearest neighbours. During training the predictions are randomly subsampled and
padded with ground-truth matches (``spv_b_ids, spv_i_ids, spv_j_ids``); padded matches get confidence 0,
which is how ``gt_mask`` marks them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

INF = 1e9


@dataclass(frozen=True)
class CoarseMatchingConfig:
    threshold: float = 0.2  # minimum dual-softmax confidence of a match (upstream THR); 0 keeps every mutual NN
    border: int = 2  # matches within this many cells of the border are removed (upstream BORDER_RM)
    temperature: float = 0.1  # dual-softmax temperature
    train_coarse_percent: float = 0.2  # training: matches kept per pair, as a fraction of max(L, S)
    train_pad_num_gt_min: int = 200  # training: at least this many ground-truth matches are added


def similarity(feat0: torch.Tensor, feat1: torch.Tensor, temperature: float,
               mask0: torch.Tensor | None = None, mask1: torch.Tensor | None = None) -> torch.Tensor:
    """``feat0 (N, L, C)``, ``feat1 (N, S, C)``, masks ``(N, L)``/``(N, S)`` bool -> the scaled similarity
    ``(N, L, S)`` whose two softmaxes make the dual softmax (pairs outside the masks are ``-1e9``)."""
    feat0 = feat0 / feat0.shape[-1] ** 0.5
    feat1 = feat1 / feat1.shape[-1] ** 0.5
    sim = torch.einsum("nlc,nsc->nls", feat0, feat1) / temperature
    if mask0 is not None and mask1 is not None:
        sim = sim.masked_fill(~(mask0[..., None] & mask1[:, None]).bool(), -INF)
    return sim


def dual_softmax(feat0: torch.Tensor, feat1: torch.Tensor, temperature: float,
                 mask0: torch.Tensor | None = None, mask1: torch.Tensor | None = None) -> torch.Tensor:
    """``feat0 (N, L, C)``, ``feat1 (N, S, C)``, masks ``(N, L)``/``(N, S)`` bool -> confidence ``(N, L, S)``."""
    sim = similarity(feat0, feat1, temperature, mask0, mask1)
    return F.softmax(sim, 1) * F.softmax(sim, 2)


def dual_log_softmax_at(sim: torch.Tensor, b: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Exact ``log conf`` at the entries ``(b, i, j)`` (each ``(M,)``) of the dual softmax of ``sim (N, L, S)``:
    ``2 sim - logsumexp over L - logsumexp over S``. Finite (with a useful gradient) where ``conf`` itself
    underflows or sits below a loss's clamp."""
    return 2 * sim[b, i, j] - torch.logsumexp(sim, 1)[b, j] - torch.logsumexp(sim, 2)[b, i]


def valid_extent(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Height and width ``(N,)`` of the valid region of padding masks ``(N, h, w)`` (True = valid)."""
    return mask.sum(1).max(-1)[0].int(), mask.sum(-1).max(-1)[0].int()


def border_allowed(hw0: tuple[int, int], hw1: tuple[int, int], border: int, mask0: torch.Tensor | None = None,
                   mask1: torch.Tensor | None = None, batch: int = 1, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells that may be matched: ``(N, h0*w0)`` and ``(N, h1*w1)`` bool, False within ``border`` cells of the
    border (of the valid region's bottom/right edge when masks are given)."""

    def allowed(hw, mask):
        h, w = hw
        rows = torch.arange(h, device=device)[None, :, None]
        cols = torch.arange(w, device=device)[None, None, :]
        if mask is None:
            hs = torch.full((batch,), h, device=device)
            ws = torch.full((batch,), w, device=device)
        else:
            hs, ws = valid_extent(mask)
        ok = (rows >= border) & (cols >= border)
        ok = ok & (rows < hs[:, None, None] - border) & (cols < ws[:, None, None] - border)
        return ok.expand(len(hs), h, w).reshape(len(hs), h * w)

    if border <= 0:
        return (torch.ones(batch, hw0[0] * hw0[1], dtype=torch.bool, device=device),
                torch.ones(batch, hw1[0] * hw1[1], dtype=torch.bool, device=device))
    return allowed(hw0, mask0), allowed(hw1, mask1)


@torch.no_grad()
def mutual_matches(conf: torch.Tensor, threshold: float, allowed0: torch.Tensor, allowed1: torch.Tensor):
    """Thresholded mutual nearest neighbours of ``conf (N, L, S)`` among allowed cells.

    Returns ``b_ids, i_ids, j_ids (M,)`` int64 and ``mconf (M,)``, ordered by (b, i).
    """
    mask = (conf > threshold) & allowed0[:, :, None] & allowed1[:, None, :]
    mask = mask & (conf == conf.max(dim=2, keepdim=True)[0]) & (conf == conf.max(dim=1, keepdim=True)[0])
    mask_v, all_j_ids = mask.max(dim=2)
    b_ids, i_ids = torch.where(mask_v)
    j_ids = all_j_ids[b_ids, i_ids]
    return b_ids, i_ids, j_ids, conf[b_ids, i_ids, j_ids]


def max_candidates(n: int, length0: int, length1: int, mask0: torch.Tensor | None = None,
                   mask1: torch.Tensor | None = None) -> int:
    """Upstream's training budget base: ``N * max(L, S)``, or with masks the sum over pairs of the smaller
    valid area."""
    if mask0 is None or mask1 is None:
        return n * max(length0, length1)
    h0, w0 = valid_extent(mask0)
    h1, w1 = valid_extent(mask1)
    return int(torch.minimum(h0 * w0, h1 * w1).sum())


def pad_with_ground_truth(b_ids, i_ids, j_ids, mconf, spv_b_ids, spv_i_ids, spv_j_ids, num_train: int,
                          pad_min: int, generator: torch.Generator | None = None):
    """Training subsampling: keep at most ``num_train - pad_min`` predictions (random, with replacement, as
    upstream) and append ``max(num_train - M_pred, pad_min)`` random ground-truth matches with confidence 0.

    Deliberate difference: upstream asserts ``pad_min < num_train``; here ``pad_min`` is lowered to
    ``num_train // 2`` for small images instead of stopping training.
    """
    device = b_ids.device
    pad_min = min(pad_min, num_train // 2)
    num_pred = len(b_ids)
    if num_pred <= num_train - pad_min:
        pred = torch.arange(num_pred, device=device)
    else:
        pred = torch.randint(num_pred, (num_train - pad_min,), device=device, generator=generator)
    gt = torch.randint(len(spv_b_ids), (max(num_train - num_pred, pad_min),), device=device, generator=generator)
    zeros = torch.zeros(len(spv_b_ids), device=device, dtype=mconf.dtype)
    return tuple(torch.cat([x[pred], y[gt]]) for x, y in
                 ((b_ids, spv_b_ids), (i_ids, spv_i_ids), (j_ids, spv_j_ids), (mconf, zeros)))


class CoarseMatching(nn.Module):
    """Dual-softmax matching (no parameters); ``training`` mode adds the ground-truth padding."""

    def __init__(self, config: CoarseMatchingConfig = CoarseMatchingConfig()):
        super().__init__()
        self.config = config

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor, hw0: tuple[int, int], hw1: tuple[int, int],
                mask0: torch.Tensor | None = None, mask1: torch.Tensor | None = None,
                ground_truth: dict | None = None, generator: torch.Generator | None = None) -> dict:
        """Match coarse cells.

        Args:
            feat0: ``(N, L, C)`` with ``L = h0 * w0`` (``hw0 = (h0, w0)``); feat1: ``(N, S, C)``.
            mask0, mask1: ``(N, h, w)`` bool padding masks (True = valid) or None.
            ground_truth: in training, ``spv_b_ids, spv_i_ids, spv_j_ids`` (``(M_gt,)`` int64).
        Returns:
            ``conf_matrix (N, L, S)``, ``b_ids, i_ids, j_ids (M',)``, ``mconf (M',)`` (0 for padded ground
            truth), ``gt_mask (M',)`` (True = padded ground truth) and ``mmask = ~gt_mask``.
        """
        cfg = self.config
        n = feat0.size(0)
        flat0 = mask0.flatten(-2) if mask0 is not None else None
        flat1 = mask1.flatten(-2) if mask1 is not None else None
        conf = dual_softmax(feat0, feat1, cfg.temperature, flat0, flat1)
        allowed0, allowed1 = border_allowed(hw0, hw1, cfg.border, mask0, mask1, batch=n, device=conf.device)
        b_ids, i_ids, j_ids, mconf = mutual_matches(conf.detach(), cfg.threshold, allowed0, allowed1)
        if self.training:
            if ground_truth is None:
                raise ValueError("training-mode coarse matching needs ground_truth (spv_b_ids, spv_i_ids, spv_j_ids)")
            num_train = int(max_candidates(n, feat0.size(1), feat1.size(1), mask0, mask1) * cfg.train_coarse_percent)
            b_ids, i_ids, j_ids, mconf = pad_with_ground_truth(
                b_ids, i_ids, j_ids, mconf, ground_truth["spv_b_ids"], ground_truth["spv_i_ids"],
                ground_truth["spv_j_ids"], num_train, cfg.train_pad_num_gt_min, generator)
        return {"conf_matrix": conf, "b_ids": b_ids, "i_ids": i_ids, "j_ids": j_ids, "mconf": mconf,
                "gt_mask": mconf == 0, "mmask": mconf != 0}


def cell_to_pixel(ids: torch.Tensor, width: int, scale: float) -> torch.Tensor:
    """Top-left pixel ``(x, y)`` of row-major cell indices ``ids (M,)`` on a grid ``width`` cells wide."""
    return torch.stack([ids % width, torch.div(ids, width, rounding_mode="floor")], dim=1) * scale
