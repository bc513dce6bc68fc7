"""S2LD (Li, Zhao, Xia, IEEE TIP 2023): sparse-to-local-dense matching, as the published code computes it.

Pipeline (grey input, sides multiples of 8): ResNet-FPN 8/2 -> keypoint detector (one keypoint per 1/8
cell) -> feature adjuster -> sine positional encoding -> coarse transformer (self/cross x 4, linear
attention) -> dual-softmax coarse matching -> 5 x 5 windows of the 1/2 map centred on each image's
*detected keypoint* -> fine transformer -> fine matching (image-0 keypoints fixed, image-1 keypoints
refined by a soft-argmax over the window).

Reproduced upstream quirks (the published weights depend on them; parity-tested):

- positional encoding: LoFTR's ``div_term`` precedence quirk (:mod:`..semidense.position_encoding`);
- cross-attention layers update image 0 first, then image 1 *from the updated image-0 features*;
- keypoint offsets are relative to the cell's top-left corner ``cell * 8`` and span +-4.8 px
  (``tanh * 1.2 * 4``); the feature adjuster sees the raw ``tanh * 1.2`` offsets;
- fine windows are centred on ``round((cell * 8 + offset) / 2)`` (half-to-even), but the expectation is added
  to the *unrounded* keypoint: ``mkpts1_f = cell1 * 8 + offset1 + expec * (W // 2) * 2`` (+-4 px); for
  cells on the outermost row/column of the grid the window centre is the fine pixel (0, 0);
- with padding masks (upstream's square-padded MegaDepth test) the masks zero padded cells in the coarse linear
  attention, fill the dual-softmax logits with -1e9, and move the bottom/right border removal to the edge of
  the valid region (the top/left border stays at the array edge);
- training: predictions are subsampled *with replacement* and padded with random ground-truth matches
  (:func:`..semidense.coarse_matching.pad_with_ground_truth`);
- both images' cell grids use image 0's stride (``hw0_i / hw0_c``), identical for multiples of 8;
- the optional score filter's loop (threshold 0.2, 0.1, ~3e-17) and its normalised scores.

Deliberate difference (training only): upstream computes ``mkpts0_f``/``mkpts1_f`` under ``no_grad``, so its
triangulation regulariser gets no gradient through the fine matches; here they keep the autograd graph
(identical values), and the loss decides what to detach.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import InputShapeError
from ..contract import InputSpec
from ..semidense.coarse_matching import CoarseMatching, cell_to_pixel
from ..semidense.position_encoding import PositionEncodingSine
from ..semidense.resnet_fpn import ResNetFPN82
from ..semidense.transformer import LocalFeatureTransformer
from .config import InferenceConfig, S2LDConfig
from .detector import FeatureAdjuster, KeypointDetector
from .fine import FinePreprocess, local_dense_expectation


def _cell_grid(batch: int, h: int, w: int, scale: float, device, dtype) -> torch.Tensor:
    """``(B, 2, h, w)`` top-left pixel ``(x, y)`` of every cell."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                            indexing="ij")
    return (torch.stack([xs, ys]) * scale).expand(batch, 2, h, w)


class S2LD(nn.Module):
    """The S2LD network (state-dict keys as upstream ``S2LDKPNet``) and the ``matches`` contract."""

    kind = "matches"  # registry kind (see densematch.models.contract)
    input_spec = InputSpec(channels="grey", normalisation="unit", size_multiple=8)

    def __init__(self, config: S2LDConfig | None = None, inference: InferenceConfig | None = None):
        super().__init__()
        config, inference = config or S2LDConfig(), inference or InferenceConfig()
        self.config, self.inference = config, inference
        coarse_dim, fine_dim = config.backbone.block_dims[2], config.backbone.block_dims[0]
        self.backbone = ResNetFPN82(config.backbone)
        self.keypoint_detector = KeypointDetector(config.detector, coarse_dim, fine_dim)
        self.feature_adjuster = FeatureAdjuster(coarse_dim, config.adjuster_dims)
        self.pos_encoding = PositionEncodingSine(config.coarse.d_model)
        self.s2ld_coarse = LocalFeatureTransformer(config.coarse)
        self.coarse_matching = CoarseMatching(config.coarse_matching)
        self.fine_preprocess = FinePreprocess(coarse_dim, config.fine.d_model, config.fine_window,
                                              config.fine_concat_coarse)
        self.s2ld_fine = LocalFeatureTransformer(config.fine)

    def check_input(self, image: torch.Tensor, name: str) -> None:
        min_cells = 2 * self.config.coarse_matching.border + 1
        stride = self.config.coarse_stride
        if image.ndim != 4 or image.shape[1] != 1:
            raise InputShapeError(f"{name} must be a (B, 1, H, W) grey tensor, got shape {tuple(image.shape)}")
        h, w = image.shape[-2:]
        if h % stride or w % stride:
            raise InputShapeError(f"{name} is {w}x{h} px; S2LD needs sides that are multiples of {stride}")
        if min(h, w) < stride * min_cells:
            raise InputShapeError(f"{name} is {w}x{h} px, smaller than S2LD's coarse grid allows: each side needs "
                                  f">= {stride * min_cells} px ({min_cells} cells of {stride} px)")

    def encode(self, image0: torch.Tensor, image1: torch.Tensor) -> dict:
        """Backbone, detector and adjuster. Returns features and keypoints (upstream names, see :meth:`forward`)."""
        for name, image in (("image0", image0), ("image1", image1)):
            self.check_input(image, name)
        bs = image0.size(0)
        if image0.shape[2:] == image1.shape[2:]:  # one pass, as upstream (and batch statistics over both)
            feats_c, feats_f = self.backbone(torch.cat([image0, image1], dim=0))
            (feat_c0, feat_c1), (feat_f0, feat_f1) = feats_c.split(bs), feats_f.split(bs)
        else:
            (feat_c0, feat_f0), (feat_c1, feat_f1) = self.backbone(image0), self.backbone(image1)
        return self.join_encoded(self._describe(feat_c0, feat_f0, image0.shape[2:]),
                                 self._describe(feat_c1, feat_f1, image1.shape[2:]))

    def encode_image(self, image: torch.Tensor) -> dict:
        """The per-image part of :meth:`encode` for one ``(B, 1, H, W)`` image (its own backbone pass, equal to
        the paired pass up to float rounding in eval mode); two of these make an :meth:`encode` output through
        :meth:`join_encoded`. Keys are upstream's with ``{}`` for the image index (``"feat_c{}"``, ...)."""
        self.check_input(image, "image")
        feat_c, feat_f = self.backbone(image)
        return self._describe(feat_c, feat_f, image.shape[2:])

    @staticmethod
    def join_encoded(encoded0: dict, encoded1: dict) -> dict:
        """Two :meth:`encode_image` outputs -> the :meth:`encode` dict of the pair (a new dict: the inputs are
        not changed by :meth:`match_encoded`)."""
        pairs = enumerate((encoded0, encoded1))
        return {key.format(k): value for k, encoded in pairs for key, value in encoded.items()}

    def _describe(self, feat_c: torch.Tensor, feat_f: torch.Tensor, hw_i) -> dict:
        """Keypoints, adjusted coarse features and fine window centres of one image's backbone features."""
        bs = feat_c.size(0)
        hw_i, hw_c, hw_f = tuple(hw_i), tuple(feat_c.shape[2:]), tuple(feat_f.shape[2:])
        scale = hw_i[0] / hw_c[0]  # upstream uses image 0's for both images: the same for multiples of 8
        scale_i2f = hw_f[0] / hw_i[0]
        raw, score = self.keypoint_detector(feat_c, feat_f)
        feat_c = self.feature_adjuster(feat_c, raw)
        offsets = raw * (scale / 2.0)  # (B, 2, h, w) px from the cell's top-left corner
        h, w = offsets.shape[2:]
        coords = _cell_grid(bs, h, w, scale, offsets.device, offsets.dtype) + offsets
        centres = (coords * scale_i2f).permute(0, 2, 3, 1).clone()  # window centres on the 1/2 map
        centres[:, [0, h - 1]] = 0.0  # upstream zeroes the outermost cell rows/columns
        centres[:, :, [0, w - 1]] = 0.0
        return {
            "hw{}_i": hw_i, "hw{}_c": hw_c, "hw{}_f": hw_f, "feat_f{}": feat_f,
            "feat_c{}": self.pos_encoding(feat_c).flatten(2).transpose(1, 2),  # (B, hw, C)
            "kps{}_f_all": offsets,
            "kps{}_i_all": offsets.flatten(2).transpose(1, 2),  # (B, hw, 2)
            "score{}_i_all": score.flatten(2).transpose(1, 2).squeeze(-1),  # (B, hw)
            "coords{}_i_all": coords.flatten(2).transpose(1, 2),  # (B, hw, 2) keypoints in pixels
            "centres{}_f": centres.reshape(bs, h * w, 2),
        }

    def match_encoded(self, data: dict, mask0: torch.Tensor | None = None, mask1: torch.Tensor | None = None,
                      ground_truth: dict | None = None, generator: torch.Generator | None = None) -> dict:
        """Coarse transformer, coarse matching, local-dense stage on the output of :meth:`encode` (updated)."""
        flat0 = mask0.flatten(-2) if mask0 is not None else None
        flat1 = mask1.flatten(-2) if mask1 is not None else None
        feat_c0, feat_c1 = self.s2ld_coarse(data["feat_c0"], data["feat_c1"], flat0, flat1)
        coarse = self.coarse_matching(feat_c0, feat_c1, data["hw0_c"], data["hw1_c"], mask0, mask1,
                                      ground_truth=ground_truth, generator=generator)
        data.update(coarse)
        b_ids, i_ids, j_ids, mmask = coarse["b_ids"], coarse["i_ids"], coarse["j_ids"], coarse["mmask"]
        scale = data["hw0_i"][0] / data["hw0_c"][0]
        mkpts0_c_p = cell_to_pixel(i_ids, data["hw0_c"][1], scale)
        mkpts1_c_p = cell_to_pixel(j_ids, data["hw1_c"][1], scale)
        kps0, kps1 = data["kps0_i_all"][b_ids, i_ids], data["kps1_i_all"][b_ids, j_ids]
        score0 = data["score0_i_all"][b_ids, i_ids]
        data.update({"mkpts0_c_p": mkpts0_c_p, "mkpts1_c_p": mkpts1_c_p, "mkpts0_c": mkpts0_c_p[mmask],
                     "mkpts1_c": mkpts1_c_p[mmask], "mconf": coarse["mconf"][mmask], "m_bids": b_ids[mmask],
                     "kps0": kps0, "kps1": kps1, "score0": score0, "score1": data["score1_i_all"][b_ids, j_ids]})
        win0, win1 = self.fine_preprocess(data["feat_f0"], data["feat_f1"], feat_c0, feat_c1, data["centres0_f"],
                                          data["centres1_f"], b_ids, i_ids, j_ids)
        if win0.size(0) == 0:
            data.update({"expec_f": win0.new_zeros(0, 3), "mkpts0_f": data["mkpts0_c"], "mkpts1_f": data["mkpts1_c"],
                         "mkpts1_f_p": mkpts1_c_p, "mscore": score0[mmask]})
            return data
        win0, win1 = self.s2ld_fine(win0, win1)
        expec, std = local_dense_expectation(win0, win1)
        radius_px = (self.config.fine_window // 2) * (data["hw0_i"][0] / data["hw0_f"][0])
        mkpts1_f_p = mkpts1_c_p + kps1 + expec * radius_px
        data.update({"expec_f": torch.cat([expec, std[:, None]], -1), "mkpts1_f_p": mkpts1_f_p,
                     "mkpts0_f": data["mkpts0_c"] + kps0[mmask], "mkpts1_f": mkpts1_f_p[mmask],
                     "mscore": score0[mmask]})
        return data

    def forward(self, image0: torch.Tensor, image1: torch.Tensor, mask0: torch.Tensor | None = None,
                mask1: torch.Tensor | None = None) -> dict:
        """Match prepared images (network pixels; OpenCV convention, pixel centres at integers).

        Args:
            image0, image1: ``(B, 1, H, W)`` grey in ``[0, 1]``, sides multiples of 8.
            mask0, mask1: optional ``(B, H/8, W/8)`` bool padding masks at the coarse grid (True = valid).
        Returns:
            dict with (``L = h0 * w0`` cells, ``M`` matches, upstream's names):
            ``coords0_i_all (B, L, 2)`` keypoints, ``kps0_i_all (B, L, 2)`` their offsets from the cell corner,
            ``score0_i_all (B, L)`` keypoint scores (same for image 1); ``conf_matrix (B, L, S)``;
            ``b_ids, i_ids, j_ids (M,)`` coarse matches, ``mconf (M,)``; ``mkpts0_c, mkpts1_c (M, 2)`` cell
            corners; ``expec_f (M, 3)`` fine expectation in [-1, 1] and std; ``mkpts0_f, mkpts1_f (M, 2)``
            fine matches, ``mscore (M,)`` image-0 keypoint scores, ``m_bids (M,)``.
        """
        return self.match_encoded(self.encode(image0, image1), mask0, mask1)

    def training_forward(self, batch: dict) -> dict:
        """Training-mode forward: ground-truth coarse matches from the detected *keypoints* (upstream
        ``spvs_coarse_kp``) pad the sampled predictions. ``batch`` holds ``image0/1 (B, 1, H, W)`` and the
        ground truth of :mod:`densematch.data`; returns the :meth:`forward` dict plus the targets."""
        from ..semidense.supervision import coarse_targets

        data = self.encode(batch["image0"], batch["image1"])
        targets = coarse_targets(batch, hw0_c=data["hw0_c"], hw1_c=data["hw1_c"], stride=self.config.coarse_stride,
                                 keypoints0=data["coords0_i_all"].detach(), keypoints1=data["coords1_i_all"].detach())
        data.update(targets)
        return self.match_encoded(data, batch.get("mask0"), batch.get("mask1"), ground_truth=targets)

    def match_images(self, image0, image1) -> dict:
        """Match two images (paths, PIL images or uint8 arrays) -> ``kpts0, kpts1 (N, 2)`` float32 in OpenCV
        pixels of the images as given, ``scores (N,)`` coarse confidence, ``keypoint_scores (N,)``."""
        from .inference import match_images

        return match_images(self, image0, image1)

    def extract(self, image):
        """The per-image part of :meth:`match_images` for one image (path, PIL image or uint8 array), read and
        resized as there: an :class:`~.inference.S2LDImageFeatures`. Many-pair matching keeps these per image."""
        from .inference import extract

        return extract(self, image)

    def match_features(self, features0, features1) -> dict:
        """:meth:`match_images` of the two images behind two :meth:`extract` outputs (same keys; each image's
        backbone runs alone here, so values equal :meth:`match_images`' up to float rounding)."""
        from .inference import match_features

        return match_features(self, features0, features1)
