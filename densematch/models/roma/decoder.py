"""RoMa's coarse-to-fine decoder: global matching at stride 16, then refinement at strides 16..1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones.fused import conv_bn, fast_path
from ...conventions import normalized_grid
from ..amp import autocast
from .config import RomaArchitecture
from .gp import GP
from .refiner import ConvRefiner
from .transformer import MatchDecoder, anchor_logits_to_flow

COARSE_SCALES = (16, 8, 4, 2, 1)
UPSAMPLE_SCALES = (8, 4, 2, 1)
REFINE_INIT = 4  # refiner displacements are in units of 1/(4 * size) of the image


class Decoder(nn.Module):
    """Children (published key layout): ``embedding_decoder``, ``gps["16"]``, ``proj[s]``, ``conv_refiner[s]``."""

    def __init__(self, arch: RomaArchitecture):
        super().__init__()
        gp_dim = arch.proj_dims[16][1]
        self.embedding_decoder = MatchDecoder(2 * gp_dim, arch.decoder_depth, arch.decoder_heads, arch.anchors)
        self.gps = nn.ModuleDict({"16": GP(gp_dim, arch.gp_temperature, arch.gp_sigma_noise)})
        self.proj = nn.ModuleDict(
            {str(s): nn.Sequential(nn.Conv2d(i, o, 1, 1), nn.BatchNorm2d(o)) for s, (i, o) in arch.proj_dims.items()}
        )
        self.conv_refiner = nn.ModuleDict(
            {
                str(s): ConvRefiner(arch.refiner_width(s), arch.disp_emb_dims[s], arch.local_corr_radius[s],
                                    arch.refiner_blocks, arch.refiner_kernel, arch.bn_momentum)
                for s in COARSE_SCALES
            }
        )
        self.amp_dtype: torch.dtype | None = None

    def set_amp_dtype(self, dtype: torch.dtype | None) -> None:
        self.amp_dtype = dtype
        for refiner in self.conv_refiner.values():
            refiner.amp_dtype = dtype

    def forward(self, f0: dict, f1: dict, upsample: bool = False, flow: torch.Tensor | None = None,
                certainty: torch.Tensor | None = None, scale_factor: float = 1.0) -> dict:
        """Match the feature pyramids ``f0`` (query) and ``f1`` (support), dicts scale -> ``(B, C, h, w)``.

        Returns ``{scale: {"flow": (B, 2, h, w), "certainty": (B, 1, h, w)}}`` for every scale, flow in
        normalised coordinates of the support image, certainty as logits. In training mode scale 16
        also has ``gm_cls`` (anchor logits) and ``gm_certainty``, and each scale ``flow_pre_delta`` and
        ``delta_flow``. With ``upsample`` only strides 8..1 run, starting from ``flow``/``certainty``.
        """
        scales = UPSAMPLE_SCALES if upsample else COARSE_SCALES
        sizes = {s: f0[s].shape[-2:] for s in f0}
        h, w = sizes[1]
        b = f0[1].shape[0]
        device = f0[1].device
        if upsample:
            flow = F.interpolate(flow, size=sizes[scales[0]], mode="bilinear", align_corners=False)
            certainty = F.interpolate(certainty, size=sizes[scales[0]], mode="bilinear", align_corners=False)
        else:
            flow = normalized_grid(*sizes[scales[0]], device=device).permute(2, 0, 1)[None].expand(b, -1, -1, -1)
            certainty = 0.0
        corresps = {}
        for scale in scales:
            key = str(scale)
            out = corresps[scale] = {}
            x, y = f0[scale], f1[scale]
            with autocast(device, self.amp_dtype):
                if self.amp_dtype is None or device.type != "cuda":
                    x, y = x.float(), y.float()
                if fast_path(self, x):  # eval CPU inference: BatchNorm folded, channels-last (same values)
                    x, y = (conv_bn(t, *self.proj[key]) for t in (x, y))
                else:
                    x, y = self.proj[key](x), self.proj[key](y)
            if key in self.gps:
                posterior = self.gps[key](x, y)
                with autocast(device, self.amp_dtype):
                    cls, certainty = self.embedding_decoder(posterior, x)
                with torch.no_grad():
                    flow = anchor_logits_to_flow(cls).permute(0, 3, 1, 2)
                if self.training:
                    out.update(gm_cls=cls, gm_certainty=certainty)
            if self.training:
                out["flow_pre_delta"] = flow
            delta, delta_certainty = self.conv_refiner[key](x, y, flow, scale_factor=scale_factor)
            if self.training:
                out["delta_flow"] = delta
            displacement = scale * torch.stack(
                (delta[:, 0].float() / (REFINE_INIT * w), delta[:, 1].float() / (REFINE_INIT * h)), dim=1
            )
            flow = flow + displacement
            certainty = certainty + delta_certainty
            out.update(flow=flow, certainty=certainty)
            if scale != 1:
                flow = F.interpolate(flow, size=sizes[scale // 2], mode="bilinear").detach()
                certainty = F.interpolate(certainty, size=sizes[scale // 2], mode="bilinear").detach()
        return corresps
