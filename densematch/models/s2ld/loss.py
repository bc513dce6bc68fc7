"""S2LD's training loss (``losses/s2ld_loss.py`` upstream), DDP-exact.

``total = coarse_weight * focal + fine_weight * l2_with_std + keypoint_weight * localisation
+ repeatability_weight * repeatability + score_weight * score consistency + sparse_weight * berHu(depth)``

Predictions expected from ``S2LD.training_forward`` (OpenCV pixels of the prepared images):

=====================  ==================  =======================================================
``conf_matrix``        ``(B, L0, L1)``     dual-softmax coarse confidences
``hw0_c``, ``hw1_c``   ``(h, w)``          coarse grid sizes
``coords0_i_all``      ``(B, L0, 2)``      every cell's keypoint (``8 * cell + offset``), differentiable
``coords1_i_all``      ``(B, L1, 2)``      idem, image 1
``score0_i_all``       ``(B, L0)``         keypoint scores in [0, 1]; ``score1_i_all`` ``(B, L1)``
``b_ids, i_ids, j_ids`` ``(M,)``           the coarse matches refined at the fine level (GT-padded)
``expec_f``            ``(M, 3)``          fine expectation (window units, x, y) and std
``mkpts0_f, mkpts1_f`` ``(N, 2)``          fine matches (for triangulation), ``mconf (N,)``, ``m_bids (N,)``
=====================  ==================  =======================================================

Optional: ``conf_matrix_gt`` and the ``spv_*`` keys of
:func:`densematch.models.semidense.supervision.keypoint_targets` (the forward computes them to pad its
coarse matches with ground truth; recomputed here when absent) and ``expec_f_gt (M, 2)``.

Decisions (where upstream has training-only bugs or depends on its data layout):

* score consistency: upstream normalises the warped keypoint for ``grid_sample`` by ``(W * 8 - 1) / 2`` of
  the *image* width, so it always reads the top-left corner of image 1's score map. We read the map where
  the warped point is: cell coordinates ``x / 8`` (a cell's keypoint is anchored at its top-left pixel
  ``8 * cell``), ``align_corners=True`` as upstream;
* the depth of the triangulation term is read at the nearest pixel (upstream ``long()``, i.e. floor; the
  two agree under the OpenCV convention up to half a pixel); the term is skipped for batches without
  depth and cameras (homography / warp-only sources);
* keypoints whose warp is unknown (no depth, or outside the image: upstream clamps those onto the border)
  are excluded from all keypoint terms (upstream's validity mask for localisation/score; repeatability
  shares the localisation mask);
* padded batches (coarse masks ``mask0/mask1``) weight the focal terms by the pairs of unpadded cells, as
  upstream's ``compute_c_weight``;
* repeatability's inner mean distance is the mean over the whole (global) batch, with its exact gradient
  (see :func:`~densematch.models.semidense.losses.centred_product_mean`);
* the berHu threshold ``0.2 * max |diff|`` is per process under DDP (as upstream).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import ConfigError
from ...geometry.triangulation import berhu_loss, triangulated_depth
from ..contract import CountReducer, LossOutput, identity_reducer, masked_mean
from ..semidense.losses import centred_product_mean, fine_l2_loss, focal_loss, options_config, padding_weight
from ..semidense.supervision import DEPTH_KEYS, fine_offset_targets, keypoint_targets, warp_points


@dataclass(frozen=True)
class S2LDLossConfig:
    """Weights and settings of the S2LD loss (defaults: the training config ``s2ld_kp_ds_dense.py``)."""

    coarse_weight: float = 1.0
    sparse_spvs: bool = False  # True: focal on positives only (test config); False: dense focal (training)
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    pos_weight: float = 1.0
    neg_weight: float = 1.0
    fine_weight: float = 1.0
    fine_type: str = "l2_with_std"  # or "l2"
    fine_correct_threshold: float = 1.0  # |gt|_inf in window units
    fine_scale: float = 2.0  # image pixels per fine-map pixel (1/2 map)
    fine_radius: float = 2.0  # fine window half-size (5 // 2)
    keypoint_weight: float = 0.1  # localisation
    repeatability_weight: float = 0.1
    score_weight: float = 0.1
    keypoint_radius: float = 8.0  # localisation / repeatability: nearest keypoint within this many pixels
    spv_radius: float = 16.0  # coarse ground truth: nearest keypoint within this many pixels
    rel_depth_tol: float | None = 0.2
    cell_size: int = 8
    sparse_weight: float = 1.0  # 3D noise-aware regulariser (berHu on triangulated depth)
    min_depth: float = 0.0
    max_depth: float = 100.0  # TRINET.MAX_DEPTH
    berhu_ratio: float = 0.2

    def __post_init__(self):
        if self.fine_type not in ("l2_with_std", "l2"):
            raise ConfigError(f"fine_type must be 'l2_with_std' or 'l2', got {self.fine_type!r}")


class S2LDLoss(nn.Module):
    """``loss(predictions, batch) -> LossOutput`` (terms: coarse, fine, keypoint, repeatability, score, depth)."""

    def __init__(self, config: S2LDLossConfig = S2LDLossConfig(), use_depth: bool = True,
                 count_reducer: CountReducer | None = None):
        super().__init__()
        self.config = config
        self.use_depth = use_depth
        self.reduce = count_reducer or identity_reducer

    def forward(self, predictions: dict, batch: dict) -> LossOutput:
        c = self.config
        spv = predictions if "conf_matrix_gt" in predictions else keypoint_targets(
            batch, predictions["coords0_i_all"], predictions["coords1_i_all"], c.spv_radius, c.rel_depth_tol)
        terms = {"coarse": self.coarse(predictions["conf_matrix"], spv["conf_matrix_gt"], padding_weight(batch)),
                 "fine": self.fine(predictions, spv)}
        terms.update(self.keypoint_terms(predictions, batch))
        if self.use_depth and all(key in batch for key in DEPTH_KEYS):
            terms["depth"] = self.depth(predictions, batch)
        weights = {"coarse": c.coarse_weight, "fine": c.fine_weight, "keypoint": c.keypoint_weight,
                   "repeatability": c.repeatability_weight, "score": c.score_weight, "depth": c.sparse_weight}
        total = sum(weights[name] * value for name, value in terms.items())
        return LossOutput(total=total, terms={name: value.detach() for name, value in terms.items()})

    def coarse(self, conf: torch.Tensor, conf_gt: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        return focal_loss(conf, conf_gt, weight, dense=not c.sparse_spvs, alpha=c.focal_alpha, gamma=c.focal_gamma,
                          pos_weight=c.pos_weight, neg_weight=c.neg_weight, reduce=self.reduce)

    def fine(self, predictions: dict, spv: dict) -> torch.Tensor:
        c = self.config
        expec_f = predictions["expec_f"]
        if "expec_f_gt" in predictions:
            gt, valid = predictions["expec_f_gt"], None
        else:
            ids = predictions["b_ids"], predictions["i_ids"], predictions["j_ids"]
            gt, valid = fine_offset_targets(spv, *ids, scale=c.fine_scale, radius=c.fine_radius)
        return fine_l2_loss(expec_f, gt, valid, c.fine_correct_threshold, with_std=c.fine_type == "l2_with_std",
                            reduce=self.reduce)

    def keypoint_terms(self, predictions: dict, batch: dict) -> dict[str, torch.Tensor]:
        """Localisation, repeatability and score consistency (``compute_keypoint_loss``)."""
        c = self.config
        kpts1, score0, score1 = (predictions[key] for key in ("coords1_i_all", "score0_i_all", "score1_i_all"))
        w_pt0, valid = warp_points(predictions["coords0_i_all"], batch, rel_depth_tol=c.rel_depth_tol)
        distance, nearest = torch.cdist(w_pt0, kpts1).min(dim=2)
        close = valid & (distance <= c.keypoint_radius)
        localisation = masked_mean(distance, close, self.reduce)
        score_sum = score0 + torch.gather(score1, 1, nearest)
        repeatability = centred_product_mean(score_sum, distance, close, self.reduce)
        h1, w1 = predictions["hw1_c"]
        score_map = score1.reshape(-1, 1, h1, w1)
        size = w_pt0.new_tensor([max(w1 - 1, 1), max(h1 - 1, 1)])
        grid = (w_pt0 / c.cell_size) / size * 2 - 1
        resampled = F.grid_sample(score_map, grid[:, :, None].to(score_map.dtype), mode="bilinear",
                                  align_corners=True)[:, 0, :, 0]
        score = 2 * masked_mean((resampled - score0) ** 2, valid, self.reduce)
        return {"keypoint": localisation, "repeatability": repeatability, "score": score}

    def depth(self, predictions: dict, batch: dict) -> torch.Tensor:
        """berHu between the triangulated depth of the fine matches and the ground-truth depth of image 0."""
        c = self.config
        kpts0, kpts1, bids = predictions["mkpts0_f"], predictions["mkpts1_f"], predictions["m_bids"]
        K0, K1, T = (batch[key].to(kpts0.dtype)[bids] for key in ("K0", "K1", "T_0to1"))
        z = triangulated_depth(kpts0, kpts1, K0, K1, T, predictions["mconf"], c.min_depth, c.max_depth)
        depth0 = batch["depth0"]
        height, width = depth0.shape[-2:]
        x = kpts0[:, 0].detach().round().long().clamp(0, width - 1)
        y = kpts0[:, 1].detach().round().long().clamp(0, height - 1)
        gt = torch.nan_to_num(depth0[bids, y, x], nan=0.0)
        return berhu_loss(z - gt, gt > 0, c.berhu_ratio, self.reduce)


def build_loss(recipe, source_kind: str, count_reducer: CountReducer | None = None) -> S2LDLoss:
    """Loss factory named by the S2LD recipe (``factory(recipe, source_kind, count_reducer)``)."""
    config = options_config(S2LDLossConfig, recipe.loss_options, "S2LD")
    return S2LDLoss(config, use_depth=source_kind != "homography", count_reducer=count_reducer)
