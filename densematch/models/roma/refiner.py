"""RoMa's convolutional refiners and the local correlation they use."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones.fused import channels_last, conv_bn, fast_path
from ...conventions import normalized_grid
from ..amp import autocast, no_autocast


def local_correlation(x: torch.Tensor, y: torch.Tensor, flow: torch.Tensor, radius: int,
                      budget_bytes: int = 64 << 20) -> torch.Tensor:
    """Correlation of A's features with B's features in a window around the current match.

    Args:
        x: ``(B, C, h, w)`` features of A.
        y: ``(B, C, h, w)`` features of B (unwarped; sampled with zero padding, no gradient, as published).
        flow: ``(B, 2, h, w)`` current match of each A cell in B, normalised coordinates.
        radius: window radius r in cells; the window is ``(2r+1)^2`` offsets one cell apart.
        budget_bytes: offsets are processed a few at a time so that the sampled window never takes more
            than about this much memory (romatch samples the whole ``C x h x w x (2r+1)^2`` window).

    Returns:
        ``(B, (2r+1)^2, h, w)``; channel ``k = iy * (2r+1) + ix`` (dy outer, dx inner), values
        ``sum_c x[c] / sqrt(C) * y_sampled[c]``.
    """
    b, c, h, w = x.shape
    side = 2 * radius + 1
    dy = torch.linspace(-2 * radius / h, 2 * radius / h, side, device=x.device)
    dx = torch.linspace(-2 * radius / w, 2 * radius / w, side, device=x.device)
    gy, gx = torch.meshgrid(dy, dx, indexing="ij")
    offsets = torch.stack((gx, gy), dim=-1).reshape(-1, 2)  # (K, 2)
    warp = flow.permute(0, 2, 3, 1)  # (B, h, w, 2)
    x_scaled = (x / c**0.5).contiguous()[..., None]
    in_place = not (torch.is_grad_enabled() and x.requires_grad)
    step = max(1, budget_bytes // max(b * c * h * w * x.element_size(), 1))
    out = []
    for start in range(0, offsets.shape[0], step):
        window = offsets[start : start + step]
        coords = (warp[:, :, :, None] + window[None, None, None]).reshape(b, h, w * len(window), 2)
        with torch.no_grad():
            sampled = F.grid_sample(y, coords, mode="bilinear", padding_mode="zeros", align_corners=False)
        sampled = sampled.view(b, c, h, w, len(window))
        product = sampled.mul_(x_scaled) if in_place else sampled * x_scaled
        out.append(product.sum(dim=1).permute(0, 3, 1, 2))
    return torch.cat(out, dim=1)


def local_correlation_dense(x: torch.Tensor, y: torch.Tensor, flow: torch.Tensor, radius: int,
                            budget_bytes: int = 8 << 20) -> torch.Tensor:
    """:func:`local_correlation` from one matrix product (inference only; for small grids).

    The window's offsets are whole cells, so all ``(2r+1)^2`` bilinear samples share the same weights
    and lie on the ``(2r+2)^2`` integer cells from ``floor(match) - r``. The dot products of A's feature
    with B's features at every cell (one GEMM per block of A's cells, ``budget_bytes`` each), picked at
    those cells (zero outside B) and combined with the four bilinear weights, give the same values up to
    float32 rounding. Cheaper than sampling the ``C x (2r+1)^2`` window when ``h w`` is at most a few
    hundred times ``(2r+1)^2`` (RoMa's coarse scales). Output ``(B, (2r+1)^2, h, w)`` (a channels-last
    view), channel order as :func:`local_correlation`.
    """
    b, c, h, w = x.shape
    side, span = 2 * radius + 1, 2 * radius + 2
    hw, n = h * w, b * h * w
    x_rows = (x / c**0.5).permute(0, 2, 3, 1).reshape(n, c)
    y_rows = y.permute(0, 2, 3, 1).reshape(n, c)
    ix = ((flow[:, 0] + 1) * w - 1) / 2  # grid_sample's unnormalisation, align_corners=False
    iy = ((flow[:, 1] + 1) * h - 1) / 2
    x0, y0 = ix.floor(), iy.floor()
    fx, fy = (ix - x0).reshape(n, 1, 1), (iy - y0).reshape(n, 1, 1)
    t = torch.arange(-radius, radius + 2, device=x.device)
    ux = x0.long().reshape(n, 1, 1) + t[None, None, :]
    uy = y0.long().reshape(n, 1, 1) + t[None, :, None]
    valid = ((ux >= 0) & (ux < w) & (uy >= 0) & (uy < h)).reshape(n, span * span)
    index = (uy * w + ux).reshape(n, span * span).clamp_(0, hw - 1)
    dots = torch.empty(n, span * span, dtype=x.dtype, device=x.device)
    step = max(1, budget_bytes // (hw * x.element_size()))
    buffer = x_rows.new_empty(min(step, hw), hw)  # reused: no page faults per block
    for i in range(b):
        y_t = y_rows[i * hw : (i + 1) * hw].t()
        for start in range(i * hw, (i + 1) * hw, step):
            rows = slice(start, min(start + step, (i + 1) * hw))
            full = torch.mm(x_rows[rows], y_t, out=buffer[: rows.stop - rows.start])
            torch.gather(full, 1, index[rows], out=dots[rows])
    dots = dots.masked_fill_(~valid, 0).view(n, span, span)
    corr = ((1 - fy) * ((1 - fx) * dots[:, :-1, :-1] + fx * dots[:, :-1, 1:])
            + fy * ((1 - fx) * dots[:, 1:, :-1] + fx * dots[:, 1:, 1:]))
    return corr.reshape(b, h, w, side * side).permute(0, 3, 1, 2)


def _block(channels: int, kernel: int, bn_momentum: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel, 1, kernel // 2, groups=channels),
        nn.BatchNorm2d(channels, momentum=bn_momentum),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 1, 1, 0),
    )


class ConvRefiner(nn.Module):
    """Predicts a displacement and a certainty delta from A's features, B's features warped by the
    current match, an embedding of the displacement from identity, and (optionally) local correlation.

    ``forward(x, y, flow, scale_factor)``: ``x``, ``y`` ``(B, C, h, w)``, ``flow`` ``(B, 2, h, w)`` ->
    ``(displacement (B, 2, h, w), certainty_delta (B, 1, h, w))``. Keys: ``block1``, ``hidden_blocks``,
    ``out_conv``, ``disp_emb`` (as published).
    """

    def __init__(self, width: int, disp_emb_dim: int, corr_radius: int = 0, hidden_blocks: int = 8,
                 kernel: int = 5, bn_momentum: float = 0.01):
        super().__init__()
        self.block1 = _block(width, kernel, bn_momentum)
        self.hidden_blocks = nn.Sequential(*(_block(width, kernel, bn_momentum) for _ in range(hidden_blocks)))
        self.out_conv = nn.Conv2d(width, 3, 1, 1, 0)
        self.disp_emb = nn.Conv2d(2, disp_emb_dim, 1, 1, 0)
        self.corr_radius = corr_radius
        self.amp_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor, y: torch.Tensor, flow: torch.Tensor, scale_factor: float = 1.0):
        if fast_path(self, x):
            return self._forward_folded(x, y, flow, scale_factor)
        b, _, h, w = x.shape
        with autocast(x.device, self.amp_dtype):
            x_hat = F.grid_sample(y, flow.permute(0, 2, 3, 1), mode="bilinear", align_corners=False)
            grid_a = normalized_grid(h, w, device=x.device).permute(2, 0, 1)[None].expand(b, 2, h, w)
            emb = self.disp_emb(40 / 32 * scale_factor * (flow - grid_a))
            parts = [x, x_hat, emb]
            if self.corr_radius:
                parts.append(local_correlation(x, y, flow, self.corr_radius))
            d = self.hidden_blocks(self.block1(torch.cat(parts, dim=1)))
        with no_autocast(x.device):
            d = self.out_conv(d.float())
        return d[:, :-1], d[:, -1:]

    def _forward_folded(self, x: torch.Tensor, y: torch.Tensor, flow: torch.Tensor, scale_factor: float):
        """Eval-mode CPU inference (see :mod:`densematch.backbones.fused`): the same computation with
        channels-last activations (grid_sample reads a channels-last ``y`` 2-3x faster, bit for bit), the
        BatchNorm folded into the depthwise conv and the ReLU fused into it. Same values up to rounding."""
        b, _, h, w = x.shape
        y = channels_last(y)
        x_hat = F.grid_sample(y, flow.permute(0, 2, 3, 1), mode="bilinear", align_corners=False)
        grid_a = normalized_grid(h, w, device=x.device).permute(2, 0, 1)[None].expand(b, 2, h, w)
        emb = self.disp_emb(40 / 32 * scale_factor * (flow - grid_a))
        parts = [x, x_hat, emb]
        if self.corr_radius:
            if h * w <= 256 * (2 * self.corr_radius + 1) ** 2 and bool(torch.isfinite(flow).all()):
                parts.append(local_correlation_dense(x, y, flow, self.corr_radius))
            else:
                parts.append(local_correlation(x, y, flow, self.corr_radius))
        d = torch.empty((b, sum(p.shape[1] for p in parts), h, w), dtype=x.dtype, device=x.device,
                        memory_format=torch.channels_last)
        start = 0
        for part in parts:  # the concatenation, written once into a channels-last buffer
            d[:, start : start + part.shape[1]].copy_(part)
            start += part.shape[1]
        for block in (self.block1, *self.hidden_blocks):
            depthwise, norm, _, pointwise = block
            d = conv_bn(conv_bn(d, depthwise, norm, relu=True), pointwise)
        d = conv_bn(d, self.out_conv)
        return d[:, :-1], d[:, -1:]
