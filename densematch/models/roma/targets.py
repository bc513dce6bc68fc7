"""Ground-truth correspondences at the resolution of one output scale of a model.

The losses need, for every cell centre of the ``(h, w)`` grid of a scale, where it lands in image 1
(normalised coordinates, :mod:`densematch.conventions`) and whether that is known. Two sources (and
their combination "both", see :class:`TargetConfig`):

``depth`` (the published RoMa behaviour, ``romatch.utils.get_gt_warp``)
    Sample depth0 bilinearly at the cell centres, unproject with ``K0``, move with ``T_0to1``, project
    with ``K1`` (in float64). A cell is valid when its sampled depth is non-zero, its projection lies in
    romatch's covisibility window and the depth of image 1 sampled there agrees with the projected depth
    within 5 % (relative to the sampled depth). ``K`` follows the OpenCV convention here (romatch's
    MegaDepth intrinsics use the pixel-corner convention; the readers convert), so the pixel conversions
    differ from romatch's by the half-pixel shift that makes the two consistent.

``warp`` (pairs without depth, e.g. homographies)
    Sample ``warp0`` bilinearly at the cell centres. A cell is valid when the pixels that enter the
    bilinear sample are all valid and their warps agree with the interpolated one within
    ``max_spread_px`` pixels of image 1 (so cells straddling a discontinuity of the warp are dropped,
    which the depth-consistency test does for the depth source).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...conventions import normalized_grid, normalized_to_pixel, pixel_to_normalized
from ...errors import InputShapeError
from ...geometry.warps import transform, unproject

DEPTH_KEYS = ("depth0", "depth1", "K0", "K1", "T_0to1")


SOURCES = ("auto", "depth", "warp", "both")


@dataclass(frozen=True)
class TargetConfig:
    """How the per-scale ground truth is made from a batch.

    ``source``: "depth" (published RoMa), "warp" (from ``warp0``/``valid0``), "both" (the depth GT, valid
    only where ``valid0`` also is: for pairs whose ``valid0`` knows more than their depth, e.g. the holes of
    synthetic views), or "auto" (depth when the batch has depth0, depth1, K0, K1 and T_0to1, else warp).
    """

    source: str = "auto"
    depth_interpolation: str = "bilinear"  # grid_sample mode for the depth maps (romatch: "bilinear")
    relative_depth_error: float = 0.05  # depth-consistency threshold of the depth source
    max_spread_px: float = 4.0  # warp source: drop cells whose warp varies more (image-1 pixels)


DEFAULT_TARGETS = TargetConfig()


def ground_truth_at(batch: dict, height: int, width: int, config: TargetConfig = DEFAULT_TARGETS):
    """GT warp ``(B, height, width, 2)`` float32 (normalised, image 1) and validity ``(B, height, width)``
    float32 in {0, 1} at the cell centres of a ``height x width`` grid over image 0.

    Non-finite warps (e.g. NaN at invalid pixels of ``warp0``) become 0 and invalid, so that they cannot
    poison gradients through the masked losses.
    """
    if config.source not in SOURCES:
        raise ValueError(f"unknown ground-truth source '{config.source}'; use one of {', '.join(SOURCES)}")
    source = config.source
    if source == "auto":
        source = "depth" if all(key in batch for key in DEPTH_KEYS) else "warp"
    if source in ("depth", "both"):
        _require(batch, DEPTH_KEYS, "depth")
        warp, prob = depth_targets(
            batch["depth0"],
            batch["depth1"],
            batch["K0"],
            batch["K1"],
            batch["T_0to1"],
            height,
            width,
            mode=config.depth_interpolation,
            rel_tol=config.relative_depth_error,
        )
    if source in ("warp", "both"):
        _require(batch, ("warp0", "valid0"), source)
        size1 = tuple(batch["image1"].shape[-2:]) if "image1" in batch else tuple(batch["warp0"].shape[1:3])
        from_warp = warp_targets(
            batch["warp0"], batch["valid0"], height, width, size1=size1, max_spread_px=config.max_spread_px
        )
        warp, prob = (warp, prob * from_warp[1]) if source == "both" else from_warp
    finite = torch.isfinite(warp).all(dim=-1)
    return torch.where(finite[..., None], warp, torch.zeros_like(warp)), prob * finite


def _require(batch: dict, keys, what: str) -> None:
    missing = [key for key in keys if key not in batch]
    if missing:
        raise InputShapeError(f"{what} ground truth needs the batch keys {', '.join(missing)}")


@torch.no_grad()
def depth_targets(
    depth0, depth1, K0, K1, T_0to1, height: int, width: int, *, mode: str = "bilinear", rel_tol: float = 0.05
):
    """GT from depth and pose at the cell centres of a ``height x width`` grid (romatch ``get_gt_warp``).

    Args:
        depth0, depth1: ``(B, H0, W0)`` / ``(B, H1, W1)`` depth, 0 = unknown.
        K0, K1: ``(B, 3, 3)`` OpenCV intrinsics at the depth maps' resolutions; T_0to1: ``(B, 4, 4)``.
    Returns:
        ``warp (B, height, width, 2)`` float32 normalised in image 1 and ``prob (B, height, width)`` float32.
    """
    batch = depth0.shape[0]
    h0, w0 = depth0.shape[-2:]
    h1, w1 = depth1.shape[-2:]
    depth0, depth1 = depth0.double(), depth1.double()
    grid = normalized_grid(height, width, device=depth0.device, dtype=torch.float64)
    grid = grid.expand(batch, height, width, 2)
    d0 = F.grid_sample(depth0[:, None], grid, mode=mode, align_corners=False)[:, 0]
    uv0 = normalized_to_pixel(grid, w0, h0).reshape(batch, -1, 2)
    points = transform(unproject(uv0, d0.reshape(batch, -1), K0.double()), T_0to1.double())
    projected = points @ K1.double().transpose(-1, -2)
    z = points[..., 2]
    uv1 = projected[..., :2] / (projected[..., 2:] + 1e-4)  # romatch's guard against zero depth
    # romatch's covisibility window, (0, w-1) x (0, h-1) in pixel-corner coordinates
    u, v = uv1[..., 0] + 0.5, uv1[..., 1] + 0.5
    covisible = (u > 0) & (u < w1 - 1) & (v > 0) & (v < h1 - 1)
    warp = pixel_to_normalized(uv1, w1, h1).reshape(batch, height, width, 2)
    d1 = F.grid_sample(depth1[:, None], warp, mode=mode, align_corners=False)[:, 0]
    z = z.reshape(batch, height, width)
    consistent = ((d1 - z) / d1).abs() < rel_tol
    valid = (d0 != 0) & covisible.reshape(batch, height, width) & consistent
    return warp.float(), valid.float()


@torch.no_grad()
def warp_targets(
    warp0, valid0, height: int, width: int, *, size1: tuple[int, int], max_spread_px: float = 4.0
):
    """GT from a dense warp at the cell centres of a ``height x width`` grid.

    Args:
        warp0: ``(B, H, W, 2)`` normalised match in image 1 of every pixel of image 0.
        valid0: ``(B, H, W)`` bool.
        size1: ``(H1, W1)`` of image 1 (sets the pixel unit of ``max_spread_px``).
    Returns:
        ``warp (B, height, width, 2)`` float32 and ``prob (B, height, width)`` float32 in {0, 1}.
    """
    batch, h0, w0 = valid0.shape
    h1, w1 = size1
    valid0 = valid0 & torch.isfinite(warp0).all(dim=-1)  # NaN would leak into zero-weight bilinear taps
    field = torch.where(valid0[..., None], warp0, torch.zeros_like(warp0)).permute(0, 3, 1, 2).float()
    grid = normalized_grid(height, width, device=warp0.device, dtype=torch.float32).expand(
        batch, height, width, 2
    )
    warp = F.grid_sample(field, grid, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    uv = normalized_to_pixel(grid, w0, h0)
    valid = torch.ones(batch, height, width, dtype=torch.bool, device=warp0.device)
    spread = torch.zeros(batch, height, width, device=warp0.device)
    # the (up to) four pixels a bilinear sample reads: nearest pixels at +-0.49 px from the cell centre
    for du in (-0.49, 0.49):
        for dv in (-0.49, 0.49):
            corner = pixel_to_normalized(uv + uv.new_tensor([du, dv]), w0, h0)
            corner_valid = F.grid_sample(valid0[:, None].float(), corner, mode="nearest", align_corners=False)
            corner_warp = F.grid_sample(field, corner, mode="nearest", align_corners=False).permute(
                0, 2, 3, 1
            )
            valid &= corner_valid[:, 0] > 0.5
            offset_px = (corner_warp - warp) * warp.new_tensor([w1 / 2, h1 / 2])
            spread = torch.maximum(spread, offset_px.norm(dim=-1))
    valid &= spread <= max_spread_px
    return warp, valid.float()
