"""The published training losses of RoMa and Tiny RoMa (``romatch/losses/robust_loss*.py``).

Both consume the model's training output ``corresps`` (a dict keyed by int scale, coarse to fine, with
``flow (B, 2, h, w)`` normalised matches in image 1 and ``certainty (B, 1, h, w)`` logits; RoMa's scale 16
also has ``gm_cls (B, 4096, h, w)`` anchor logits and ``gm_certainty (B, 1, h, w)``) and a batch in the
pair-sample format (:mod:`densematch.data`). Ground truth per scale comes from
:func:`densematch.train.targets.ground_truth_at`.

RoMa (``RomaLoss``), per scale s from coarse to fine, with ``prob`` the GT validity:
    * local masking for ``s <= local_largest_scale``: ``prob *= prev_epe < (2/512) * local_dist[s] * s``,
      where ``prev_epe`` is the end-point error of the previous (coarser) scale's flow, nearest-upsampled;
    * where ``gm_cls`` is present: cross entropy against the anchor nearest to the GT (over pixels with
      ``prob > 0.99``) + ``ce_weight * BCE(gm_certainty, prob)`` (over all pixels);
    * the refined flow: generalised Charbonnier ``cs^a ((epe/cs)^2 + 1)^(a/2)`` with ``cs = c * s`` (over
      ``prob > 0.99``) + ``ce_weight * BCE(certainty, prob)``.
    Published weights: ``ce_weight=0.01, local_dist={1: 4, 2: 4, 4: 8, 8: 8}, local_largest_scale=8,
    alpha=0.5, c=1e-4``; all scale weights 1; the total is the plain sum.

Tiny RoMa (``TinyRomaLoss``), per scale s:
    * ``prob *= epe < (2/512) * local_dist[s] * s`` for the scales in ``local_dist`` (the current scale's
      error, as published);
    * Charbonnier with a per-scale ``alpha`` + ``ce_weight * BCE(certainty, target)``, where the certainty
      target is ``prob * (epe < s * epe_mask_prob_th)``.
    Published: ``ce_weight=0.01, local_dist={4: 4}, alpha={4: 0.15, 8: 0.15}, c=1e-4,
    epe_mask_prob_th=0.001``.
    (The published loss also has a correlation-volume NLL term that fires only when the model emits
    ``corr_volume``; the released Tiny RoMa never does, and it is not implemented here.)

Means over many GPUs: every mean is kept as (sum, count), and the counts are summed over processes
before dividing (``count_reducer``), so the loss of each process is its share of the loss of the whole
global batch, and the sum of the shares equals the single-process loss on the same batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..contract import CountReducer, LossOutput
from .targets import DEFAULT_TARGETS, TargetConfig, ground_truth_at


@dataclass(frozen=True)
class RomaLossConfig:
    """Weights of the RoMa loss (defaults: ``experiments/train_roma_outdoor.py``)."""

    ce_weight: float = 0.01  # weight of the certainty (matchability) BCE terms; 0 disables them (ScanNet)
    local_dist: Mapping[int, float] = field(
        default_factory=lambda: {1: 4, 2: 4, 4: 8, 8: 8}
    )  # in 1/512 units x s
    local_largest_scale: int = 8  # local masking applies to scales <= this
    alpha: float | Mapping[int, float] = 0.5  # Charbonnier exponent (per scale when a mapping)
    c: float = 1e-4  # Charbonnier scale per unit of s (normalised coordinates)
    scale_weights: Mapping[int, float] = field(default_factory=lambda: {1: 1, 2: 1, 4: 1, 8: 1, 16: 1})


@dataclass(frozen=True)
class TinyRomaLossConfig:
    """Weights of the Tiny RoMa loss (defaults: ``experiments/train_tiny_roma_v1_outdoor.py``)."""

    ce_weight: float = 0.01
    local_dist: Mapping[int, float] = field(default_factory=lambda: {4: 4})
    alpha: float | Mapping[int, float] = field(default_factory=lambda: {4: 0.15, 8: 0.15})
    c: float = 1e-4
    epe_mask_prob_th: float | None = 0.001  # certainty target is 0 where epe >= s * this; None = prob


class _Terms:
    """Loss terms kept as (weight, sum, count) so that means can span processes."""

    def __init__(self):
        self.names: list[str] = []
        self.weights: list[float] = []
        self.sums: list[torch.Tensor] = []
        self.counts: list[torch.Tensor] = []

    def add_mean(
        self, name: str, values: torch.Tensor, weight: float, mask: torch.Tensor | None = None
    ) -> None:
        """Add ``weight * mean(values[mask])`` (0 when the selection is empty)."""
        selected = values[mask] if mask is not None else values
        self.names.append(name)
        self.weights.append(float(weight))
        self.sums.append(selected.sum())
        self.counts.append(torch.tensor(float(selected.numel()), dtype=torch.float64, device=values.device))

    def finish(self, count_reducer: CountReducer | None) -> LossOutput:
        if not self.sums:
            raise ValueError("the model output holds no scale to compute a loss on")
        counts = torch.stack(self.counts)
        if count_reducer is not None:
            counts = count_reducer(counts)
        total = self.sums[0].new_zeros(())
        terms = {}
        for name, weight, value, count in zip(self.names, self.weights, self.sums, counts, strict=True):
            mean = value / count.clamp(min=1).to(value.dtype)
            terms[name] = mean.detach()
            if weight:
                total = total + weight * mean
        return LossOutput(total, terms)


def charbonnier(epe: torch.Tensor, alpha: float, scale_c: float) -> torch.Tensor:
    """Generalised Charbonnier (Barron) penalty ``c^a ((x/c)^2 + 1)^(a/2)`` of end-point errors ``x``."""
    return scale_c**alpha * ((epe / scale_c) ** 2 + 1) ** (alpha / 2)


def nearest_anchor(warp: torch.Tensor, anchors: int) -> torch.Tensor:
    """Index ``(B, h, w)`` of the anchor nearest to each point of ``warp (B, h, w, 2)``.

    Anchor ``k`` sits at ``(lin[k % anchors], lin[k // anchors])`` with
    ``lin = linspace(-1 + 1/anchors, 1 - 1/anchors, anchors)``; ties go to the lower index (as an argmin
    over all anchors does).
    """
    position = (warp + 1) * anchors / 2 - 0.5  # continuous anchor coordinate, anchor i at i
    index = torch.ceil(position - 0.5).clamp(0, anchors - 1).long()
    return index[..., 1] * anchors + index[..., 0]


def _per_scale(value, scale: int) -> float:
    return float(value[scale]) if isinstance(value, Mapping) else float(value)


class _RobustLoss(nn.Module):
    """What both published losses share: per-scale GT, the Charbonnier + certainty terms, reduction."""

    def __init__(self, config, targets: TargetConfig, count_reducer: CountReducer | None):
        super().__init__()
        self.config = config
        self.targets = targets
        self.count_reducer = count_reducer

    def forward(self, corresps: Mapping[int, Mapping[str, torch.Tensor]], batch: Mapping) -> LossOutput:
        """``corresps`` as described in the module docstring; ``batch`` in the pair-sample format."""
        terms = _Terms()
        prev_epe = None
        for scale in sorted(corresps, reverse=True):  # coarse to fine
            entry = corresps[scale]
            x2, prob = ground_truth_at(batch, *entry["certainty"].shape[-2:], self.targets)
            prev_epe = self._scale_terms(terms, scale, entry, x2, prob, prev_epe)
        return terms.finish(self.count_reducer)

    def _scale_terms(self, terms: _Terms, scale: int, entry: Mapping, x2, prob, prev_epe):
        """Add the terms of one scale; return its end-point error ``(B, h, w)`` (detached)."""
        raise NotImplementedError

    def _regression(
        self,
        terms: _Terms,
        prefix: str,
        scale: int,
        flow,
        certainty,
        x2,
        prob,
        cert_target,
        weight: float = 1.0,
    ) -> None:
        """Charbonnier on ``flow`` over ``prob > 0.99`` and BCE of ``certainty`` against ``cert_target``."""
        cfg = self.config
        epe = (flow.float().permute(0, 2, 3, 1) - x2).norm(dim=-1)
        penalty = charbonnier(epe, _per_scale(cfg.alpha, scale), cfg.c * scale)
        bce = F.binary_cross_entropy_with_logits(certainty[:, 0].float(), cert_target, reduction="none")
        terms.add_mean(f"{prefix}_certainty_loss_{scale}", bce, weight * cfg.ce_weight)
        terms.add_mean(f"{prefix}_regression_loss_{scale}", penalty, weight, prob > 0.99)


def _epe(flow: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """End-point error ``(B, h, w)`` of a flow ``(B, 2, h, w)`` against GT ``(B, h, w, 2)``, detached."""
    return (flow.detach().float().permute(0, 2, 3, 1) - x2).norm(dim=-1)


class RomaLoss(_RobustLoss):
    """The RoMa loss (``RobustLosses`` of ``train_roma_outdoor.py``); see the module docstring.

    ``forward(corresps, batch) -> LossOutput``. ``count_reducer`` sums a tensor over processes (DDP).
    """

    def __init__(
        self,
        config: RomaLossConfig = RomaLossConfig(),
        targets: TargetConfig = DEFAULT_TARGETS,
        count_reducer: CountReducer | None = None,
    ):
        super().__init__(config, targets, count_reducer)

    def _scale_terms(self, terms: _Terms, scale: int, entry: Mapping, x2, prob, prev_epe):
        cfg = self.config
        if scale <= cfg.local_largest_scale and prev_epe is not None:
            coarse = F.interpolate(prev_epe[:, None], size=prob.shape[-2:], mode="nearest-exact")[:, 0]
            prob = prob * (coarse < (2 / 512) * cfg.local_dist[scale] * scale)
        weight = float(cfg.scale_weights.get(scale, 1.0))
        if entry.get("gm_cls") is not None:
            logits = entry["gm_cls"].float()
            target = nearest_anchor(x2, round(logits.shape[1] ** 0.5))
            cls = F.cross_entropy(logits, target, reduction="none")
            certainty = entry["gm_certainty"][:, 0].float()
            bce = F.binary_cross_entropy_with_logits(certainty, prob, reduction="none")
            terms.add_mean(f"gm_certainty_loss_{scale}", bce, weight * cfg.ce_weight)
            terms.add_mean(f"gm_cls_loss_{scale}", cls, weight, prob > 0.99)
        elif entry.get("gm_flow") is not None:
            gm_flow, gm_certainty = entry["gm_flow"], entry["gm_certainty"]
            self._regression(terms, "gm", scale, gm_flow, gm_certainty, x2, prob, prob, weight)
        self._regression(terms, "delta", scale, entry["flow"], entry["certainty"], x2, prob, prob, weight)
        return _epe(entry["flow"], x2)


class TinyRomaLoss(_RobustLoss):
    """The Tiny RoMa loss (``robust_loss_tiny_roma.RobustLosses``); see the module docstring."""

    def __init__(
        self,
        config: TinyRomaLossConfig = TinyRomaLossConfig(),
        targets: TargetConfig = DEFAULT_TARGETS,
        count_reducer: CountReducer | None = None,
    ):
        super().__init__(config, targets, count_reducer)

    def _scale_terms(self, terms: _Terms, scale: int, entry: Mapping, x2, prob, prev_epe):
        for prefix, flow, certainty in (("gm", "gm_flow", "gm_certainty"), ("delta", "flow", "certainty")):
            if entry.get(flow) is None:
                continue
            epe = _epe(entry[flow], x2)
            local = prob
            if scale in self.config.local_dist:
                local = prob * (epe < (2 / 512) * self.config.local_dist[scale] * scale)
            threshold = self.config.epe_mask_prob_th
            cert_target = local if threshold is None else local * (epe < scale * threshold)
            self._regression(terms, prefix, scale, entry[flow], entry[certainty], x2, local, cert_target)
        return epe
