"""Losses shared by the semi-dense matchers (LoFTR family: S2LD, IMAMatch), written for DDP-exact means.

Every mean is ``sum / count`` with the count (and, where a mean enters a weight, the sum) passed through
``reduce`` (:data:`densematch.models.contract.CountReducer`: the sum over processes; identity in one
process). Each process then returns its share of the whole-batch loss: the shares sum to the loss one process
would compute on the whole batch, and so do their gradients (DDP sums gradients and the trainer does not
divide again). Where upstream (LoFTR's ``loftr_loss.py``, S2LD's ``s2ld_loss.py``) "assigns a false
supervision" when nothing is supervised, the term here is an exact 0 that still depends on the predictions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

import torch

from ...errors import ConfigError
from ..contract import CountReducer, identity_reducer, masked_mean


def focal_loss(
    conf: torch.Tensor,
    conf_gt: torch.Tensor,
    weight: torch.Tensor | None = None,
    dense: bool = False,
    alpha: float = 0.25,
    gamma: float = 2.0,
    pos_weight: float = 1.0,
    neg_weight: float = 1.0,
    reduce: CountReducer | None = None,
) -> torch.Tensor:
    """Coarse focal loss on a matching-confidence matrix (LoFTR ``compute_coarse_loss``, ``focal``).

    Args:
        conf: ``(B, L0, L1)`` dual-softmax confidences, clamped to ``[1e-6, 1 - 1e-6]``.
        conf_gt: ``(B, L0, L1)`` ground truth, 1 = match.
        weight: optional ``(B, L0, L1)`` element weights (padding masks); weighted terms still count.
        dense: False = positives only (``SPARSE_SPVS``: dual-softmax has no dustbin); True = positives
            ``-alpha (1 - p)^gamma log p`` plus negatives ``-alpha p^gamma log(1 - p)``, each averaged.
        pos_weight, neg_weight: factors of the two terms (upstream ``POS_WEIGHT``/``NEG_WEIGHT``, 1).

    Returns the scalar loss.
    """
    conf = conf.clamp(1e-6, 1 - 1e-6)
    pos = conf_gt == 1
    loss_pos = -alpha * (1 - conf).pow(gamma) * conf.log()
    if weight is not None:
        loss_pos = loss_pos * weight
    loss = pos_weight * masked_mean(loss_pos, pos, reduce)
    if dense:
        loss_neg = -alpha * conf.pow(gamma) * (1 - conf).log()
        if weight is not None:
            loss_neg = loss_neg * weight
        loss = loss + neg_weight * masked_mean(loss_neg, conf_gt == 0, reduce)
    return loss


def with_exact_log_gradient(value: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """``value`` (loss terms computed from clamped probabilities, as upstream) carrying the gradient of
    ``exact`` (the same terms computed from exact log-probabilities).

    Upstream's ``log(clamp(p, 1e-6))`` and ``log(p + 1e-6)`` flatten the gradient where ``p`` is far below
    1e-6, which is where a dual softmax of untrained features puts nearly every true match (measured at
    initialisation on 96 px synthetic pairs: 98 % of IMAMatch's coarse positives, median ``p`` 1e-44), so the
    coarse term does not train. The value, what the logs show, stays upstream's.
    """
    return value.detach() + (exact - exact.detach())


def focal_loss_exact_log(
    conf: torch.Tensor,
    conf_gt: torch.Tensor,
    log_conf_gt: torch.Tensor,
    weight: torch.Tensor | None = None,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduce: CountReducer | None = None,
) -> torch.Tensor:
    """:func:`focal_loss` on the positives (``dense=False``) in value, with the gradient of the exact
    log-confidence ``log_conf_gt (M,)`` at the positives (``torch.where(conf_gt == 1)`` order); see
    :func:`with_exact_log_gradient`."""
    pos = conf_gt == 1
    if log_conf_gt.shape != (int(pos.sum()),):
        raise ValueError(f"log_conf_gt has shape {tuple(log_conf_gt.shape)}, expected ({int(pos.sum())},)")
    p = conf[pos].clamp(1e-6, 1 - 1e-6)
    value = -alpha * (1 - p).pow(gamma) * p.log()
    exact = -alpha * (1 - log_conf_gt.exp()).pow(gamma) * log_conf_gt
    loss = with_exact_log_gradient(value, exact)
    if weight is not None:
        loss = loss * weight[pos]
    return masked_mean(loss, torch.ones_like(loss, dtype=torch.bool), reduce)


def padding_weight(batch: dict) -> torch.Tensor | None:
    """``(B, L0, L1)`` 0/1 weights of cell pairs inside both images' unpadded regions (upstream
    ``compute_c_weight``), from the coarse padding masks ``mask0/mask1 (B, h, w)``; None without masks."""
    if "mask0" not in batch or "mask1" not in batch:
        return None
    return (batch["mask0"].flatten(-2)[..., None] & batch["mask1"].flatten(-2)[:, None].bool()).float()


def fine_l2_loss(
    expec_f: torch.Tensor,
    expec_f_gt: torch.Tensor,
    valid: torch.Tensor | None = None,
    correct_threshold: float = 1.0,
    with_std: bool = False,
    reduce: CountReducer | None = None,
) -> torch.Tensor:
    """LoFTR's fine losses ``l2`` and (``with_std``) ``l2_with_std``.

    Args:
        expec_f: ``(M, 2)`` predicted offsets ``(x, y)`` in window units, or ``(M, 3)`` with the heatmap's std.
        expec_f_gt: ``(M, 2)`` ground-truth offsets; only matches with ``|gt|_inf < correct_threshold`` (inside
            the window) and ``valid (M,)`` (optional) are supervised.
        with_std: weight each squared error by its inverse std divided by the mean inverse std over *all*
            matches (detached, so the std cannot be inflated to lower the loss).

    Returns the mean (weighted) squared error over the supervised matches.
    """
    correct = torch.linalg.vector_norm(expec_f_gt, ord=float("inf"), dim=1) < correct_threshold
    if valid is not None:
        correct = correct & valid
    offset_l2 = ((expec_f_gt - expec_f[:, :2]) ** 2).sum(-1)
    if with_std:
        inverse_std = 1.0 / expec_f[:, 2].detach().clamp(min=1e-10)
        count = inverse_std.new_tensor(float(len(inverse_std)))
        total = (reduce or identity_reducer)(torch.stack((inverse_std.sum(), count)))
        offset_l2 = offset_l2 * inverse_std / (total[0] / total[1].clamp(min=1))
    return masked_mean(offset_l2, correct, reduce)


def options_config(cls, options: Mapping[str, object], what: str):
    """Build the frozen dataclass ``cls`` from a recipe's ``loss_options``; unknown names raise ConfigError."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown {what} loss options {unknown}; known: {sorted(known)}")
    return cls(**options)


def centred_product_mean(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, reduce: CountReducer | None = None
) -> torch.Tensor:
    """``mean_mask(a * (b - mean_mask(b)))`` with the inner mean taken over all processes (value and gradient).

    ``sum a (b - mean b) = sum ab - (sum a)(sum b) / n``; the product of the two global sums is split so
    that the processes' shares add up to it and each share has the exact gradient w.r.t. its own elements.
    """
    reduce = reduce or identity_reducer
    mask_f = mask.to(a.dtype)
    sum_a, sum_b, sum_ab = (a * mask_f).sum(), (b * mask_f).sum(), (a * b * mask_f).sum()
    local_n = mask_f.sum().detach()
    totals = reduce(torch.stack((sum_a.detach(), sum_b.detach(), local_n)))
    global_a, global_b, n = totals[0], totals[1], totals[2].clamp(min=1)
    share = sum_ab - (sum_a * global_b + global_a * sum_b - global_a * global_b * local_n / n) / n
    return torch.where(totals[2] > 0, share / n, (a.sum() + b.sum()) * 0)
