"""IMAMatch (Di, Liao et al. 2025): semi-dense matching with increased matching amount.

The network and its test-time numerics follow upstream ``LiaoYun0x0/IMAmatch@901134e``
(``models/model.py: Matcher.forward_test``), checked against it by ``tests/test_imamatch_parity.py``:
MBFormer features at 1/2, 1/4, 1/8; coarse dual softmax at 1/8 with mutual nearest neighbours; the
key-area direction decision (:mod:`.direction`) with one-to-many matches; densification of
low-confidence matches (:mod:`.densify`); two-stage fine matching at 1/2 (:mod:`.fine`). Output points
are upstream's: 1/2-resolution pixels times 2.

Deliberate differences, none changing a number: ``FIX_BUG_FOR_SCANNET`` is the per-model setting
``IMAMatchArchitecture.fix_bug_for_scannet`` instead of a module global; the direction's mean squared
spread is computed in closed form (no ``N x N`` matrix); the whole step 1 (sampling included) runs in
chunks; an ``add_matches`` outside {0, 4, 9, 16} is an error up front.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import InputShapeError
from ..contract import InputSpec
from .attention import TokenAttentionBlock
from .backbone import MBFormer
from .coarse import dual_softmax_confidence, select_coarse
from .config import MEGADEPTH_ARCH, MEGADEPTH_TEST, IMAMatchArchitecture, IMAMatchSettings
from .densify import fine_queries
from .fine import refine, regression_head


class IMAMatch(nn.Module):
    """IMAMatch network. Parameter names equal upstream ``Matcher`` (``backbone``, ``attn1``, ``attn2``,
    ``regression1``, ``regression2``), so a state dict saved by the reference code loads strictly."""

    kind = "matches"  # the registry kind (densematch.models.contract)
    input_spec = InputSpec(channels="grey", normalisation="unit", size_multiple=32)

    def __init__(self, arch: IMAMatchArchitecture = MEGADEPTH_ARCH, settings: IMAMatchSettings = MEGADEPTH_TEST):
        super().__init__()
        self.arch, self.settings = arch, settings
        fine_dim, ratio = arch.dims[0], arch.expansion[3]
        self.window1, self.window2 = arch.window1, arch.window2
        self.backbone = MBFormer(arch)
        self.attn1 = TokenAttentionBlock(fine_dim, arch.head_dim, arch.dropout, ratio)
        self.attn2 = TokenAttentionBlock(fine_dim, arch.head_dim, arch.dropout, ratio)
        self.regression1 = regression_head(2 * fine_dim + arch.window1**2)
        self.regression2 = regression_head(2 * fine_dim + arch.window2**2)

    def configure(self, **options) -> IMAMatch:
        """Change inference settings in place (names of :class:`IMAMatchSettings`); returns ``self``."""
        self.settings = self.settings.updated(**options)
        return self

    def check_input_size(self, height: int, width: int) -> None:
        """Raise :class:`InputShapeError` for a network input this model cannot take (the backbone's
        :meth:`MBFormer.check_input_size`); called before any work by :meth:`forward` and the trainer."""
        self.backbone.check_input_size(height, width)

    def features(self, image0: torch.Tensor, image1: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Both images through MBFormer in one batch -> ``(f2, f4, f8)`` of shape ``(2B, C, H/s, W/s)``."""
        if image0.shape != image1.shape:
            raise InputShapeError(
                f"IMAMatch runs both images in one batch: shapes must be equal, got {tuple(image0.shape)} and "
                f"{tuple(image1.shape)} (pad them to a common size)"
            )
        return self.backbone(torch.cat([image0, image1], dim=0))

    @torch.no_grad()
    def forward(self, image0: torch.Tensor, image1: torch.Tensor) -> dict:
        """Match one prepared pair (upstream ``forward_test``), with ``self.settings``.

        ``image0, image1``: ``(1, 1, H, W)`` grey in [0, 1], H and W multiples of 32, equal shapes.
        Returns, with N matches (N = 0 when there is no coarse match or the direction RANSAC fails):

        * ``kpts0, kpts1 (N, 2)``: points in image 0 / image 1, pixels of the network input (x, y);
        * ``query, reference (N, 2)``: the same, in the matching direction (image 1 is the query when
          ``reverse``), exactly upstream's returned ``coords0, coords1``;
        * ``scores (N,)``: coarse confidence of each match; ``reverse``: bool;
        * ``coarse_query, coarse_reference (Nc, 2)`` long cells at 1/8 and ``coarse_confidence (Nc,)``;
        * ``mutual0, mutual1 (Nm, 2)``: the mutual nearest cells, ``ransac_inliers (Nm,)`` bool (None without
          ``allow_reverse``);
        * ``fine_query, fine_reference (Nf, 2)``: densified queries and reference start points at 1/2
          before refinement; ``densified (Nf,)`` bool; ``fine_index (N,)`` long: row of each match in them.
        """
        if image0.ndim != 4 or image0.shape[:2] != (1, 1):
            raise InputShapeError(f"IMAMatch.forward expects (1, 1, H, W) grey images, got {tuple(image0.shape)}")
        s = self.settings
        self.check_input_size(*image0.shape[-2:])
        f2, _, f8 = self.features(image0, image1)
        conf = dual_softmax_confidence(f8[:1], f8[1:], self.arch.coarse_temperature)
        coarse = select_coarse(conf, f8.shape[-1], s.coarse_threshold, s.allow_reverse)
        if coarse is None:
            return _empty(image0.device, reverse=False)
        fq, fr = (f2[1:], f2[:1]) if coarse.reverse else (f2[:1], f2[1:])
        queries = fine_queries(coarse, s.add_matches, s.high_threshold, s.rplus)
        reference, keep = refine(self, fq, fr, queries.query, queries.reference,
                                 check_consistency=s.add_matches > 1, iter_optimize=s.iter_optimize,
                                 chunk=s.fine_chunk)
        index = torch.nonzero(keep).reshape(-1)
        h, w = f2.shape[-2:]
        inside = (reference >= 0).all(dim=-1) & (reference[:, 0] <= w) & (reference[:, 1] <= h)
        index, reference = index[inside], reference[inside]
        query, reference = queries.query[index] * 2, reference * 2
        kpts0, kpts1 = (reference, query) if coarse.reverse else (query, reference)
        return {
            "kpts0": kpts0, "kpts1": kpts1, "scores": queries.confidence[index], "reverse": coarse.reverse,
            "query": query, "reference": reference,
            "coarse_query": coarse.query, "coarse_reference": coarse.reference,
            "coarse_confidence": coarse.confidence,
            "fine_query": queries.query, "fine_reference": queries.reference, "densified": queries.densified,
            "fine_index": index, "mutual0": coarse.mutual0, "mutual1": coarse.mutual1,
            "ransac_inliers": coarse.inliers,
        }

    def match_images(self, image0, image1) -> dict:
        """Match two images (paths, PIL images or uint8 arrays); see :mod:`.inference` for the resizing.

        Returns ``kpts0, kpts1 (N, 2)`` float32 in OpenCV pixels of the images as given (``kpts0`` always in
        image 0, also when ``reverse``), ``scores (N,)``, ``reverse`` (bool: image 1 was the query) and
        ``pose_refinement`` ("ba" when ``use_ba``, else None: for the pose tools).
        """
        from .inference import match_images

        return match_images(self, image0, image1)

    def training_forward(self, batch: dict) -> dict:
        """Training-mode forward on a prepared batch with ground truth; see :func:`.training.training_forward`."""
        from .training import training_forward

        return training_forward(self, batch)


def _empty(device, reverse: bool) -> dict:
    pts = torch.zeros(0, 2, device=device)
    ids = torch.zeros(0, dtype=torch.long, device=device)
    flags = torch.zeros(0, dtype=torch.bool, device=device)
    return {
        "kpts0": pts, "kpts1": pts, "scores": torch.zeros(0, device=device), "reverse": reverse,
        "query": pts, "reference": pts, "coarse_query": ids.reshape(0, 2), "coarse_reference": ids.reshape(0, 2),
        "coarse_confidence": torch.zeros(0, device=device), "fine_query": pts, "fine_reference": pts,
        "densified": flags, "fine_index": ids, "mutual0": ids.reshape(0, 2), "mutual1": ids.reshape(0, 2),
        "ransac_inliers": None,
    }
