"""Ground truth for semi-dense (LoFTR-family) matchers, from the pair-sample batch.

Pixel convention: OpenCV pixels (:mod:`densematch.conventions`, centre of the top-left pixel at (0, 0)) at
the resolution of the batch's images. Upstream (LoFTR ``utils/supervision.py``, S2LD, IMAMatch
``models/utils.py``) reads depth at ``kpts.round()``, i.e. integer coordinates are pixel centres: the same
convention, so no half-pixel shift is needed. Coarse cell ``i`` (row-major over the ``(h, w)`` grid at
``scale`` 8) is sampled at ``scale * (x, y) + cell_offset``: ``3.5`` is the cell centre (LoFTR-family /
IMAMatch ``8 i + 3.5``), ``0`` the cell's top-left pixel (LoFTR's and S2LD's ``spvs_coarse``).

Where a point lands comes from the richest geometry in the batch (:func:`warp_points`):

``depth``  ``depth0/depth1, K0/K1, T_0to1``: depth read at the nearest pixel (0 = unknown -> invalid),
           unprojected, moved, projected; valid when inside ``[0, W-1] x [0, H-1]`` of the other image and
           (``rel_depth_tol``) the other image's depth at the nearest pixel agrees within 20 % (upstream
           ``warp_kpts``). Upstream reads that depth at ``floor`` and keeps points of unknown depth (LoFTR
           discards the validity mask; such points land on one spurious spot); we use the nearest pixel
           and drop them. Where the batch also has ``valid0`` (synthetic pairs: it knows the inpainted
           holes of view 1), image 0's points must be valid there too.
``H_0to1`` homography pairs: exact, both directions (the inverse for image 1 -> 0), valid inside the image.
``warp0``  pairs with only ``warp0/valid0``: image 0 -> 1 only, bilinear, valid where every pixel of the
           bilinear footprint is valid. Without a reverse warp the mutual check becomes one-to-one: among
           the cells of image 0 landing in one cell of image 1 the closest to its sample point is kept.

Coarse correspondences (:func:`coarse_targets`) assign a warped point to the nearest cell sample point
(``floor((w - cell_offset) / scale + 0.5)``: LoFTR's ``round`` for offset 0, the OpenCV-exact containing cell
for 3.5, where IMAMatch's ``floor(w / 8)`` is half a pixel off) and keep mutual pairs. Upstream marks
"no match" by index 0 and therefore never supervises the top-left cell; we carry explicit validity, so cell 0
is supervised like any other. An empty ground truth gives empty id tensors (upstream pads a dummy match).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ...conventions import normalized_to_pixel, pixel_to_normalized
from ...errors import InputShapeError

DEPTH_KEYS = ("depth0", "depth1", "K0", "K1", "T_0to1")


@dataclass(frozen=True)
class CoarseSupervision:
    """How coarse ground truth is made."""

    scale: int = 8  # pixels per coarse cell
    cell_offset: float = 3.5  # sample point of cell (x, y) is scale * (x, y) + cell_offset (OpenCV pixels)
    rel_depth_tol: float | None = 0.2  # depth-consistency tolerance (relative); None = no occlusion check


def geometry_source(batch: dict) -> str:
    """"depth", "homography" or "warp": which ground truth :func:`warp_points` uses for this batch."""
    if all(key in batch for key in DEPTH_KEYS):
        return "depth"
    if "H_0to1" in batch:
        return "homography"
    if "warp0" in batch and "valid0" in batch:
        return "warp"
    raise InputShapeError("the batch has no ground truth: need depth0/depth1/K0/K1/T_0to1, H_0to1 or warp0/valid0")


def _nearest(values: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """``values (B, H, W)`` at the nearest pixel of ``uv (B, L, 2)`` (clamped into the map) -> ``(B, L)``."""
    height, width = values.shape[-2:]
    x = uv[..., 0].round().long().clamp(0, width - 1)
    y = uv[..., 1].round().long().clamp(0, height - 1)
    return torch.gather(values.flatten(1), 1, y * width + x)


def _inside(uv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return (uv[..., 0] >= 0) & (uv[..., 0] <= width - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= height - 1)


def warp_points_depth(points, depth_a, depth_b, K_a, K_b, T_atob, rel_depth_tol: float | None = 0.2):
    """Points ``(B, L, 2)`` of image a -> ``(B, L, 2)`` in image b and validity ``(B, L)`` (see module doc)."""
    height_a, width_a = depth_a.shape[-2:]
    z_a = torch.nan_to_num(_nearest(depth_a, points), nan=0.0)
    known = (z_a > 0) & _inside(points, height_a, width_a)
    homogeneous = torch.cat((points, torch.ones_like(points[..., :1])), -1) * z_a[..., None]
    cam_a = homogeneous @ torch.linalg.inv(K_a).transpose(-1, -2)
    cam_b = cam_a @ T_atob[:, :3, :3].transpose(-1, -2) + T_atob[:, None, :3, 3]
    z_b = cam_b[..., 2]
    projected = cam_b @ K_b.transpose(-1, -2)
    uv_b = projected[..., :2] / torch.where(z_b.abs() > 1e-8, z_b, torch.full_like(z_b, 1e-8))[..., None]
    height_b, width_b = depth_b.shape[-2:]
    valid = known & (z_b > 0) & _inside(uv_b, height_b, width_b)
    if rel_depth_tol is not None:
        sampled = torch.nan_to_num(_nearest(depth_b, uv_b), nan=0.0)
        valid &= (sampled > 0) & ((sampled - z_b).abs() < rel_depth_tol * sampled.clamp(min=1e-12))
    return uv_b, valid


def _apply_homography(H: torch.Tensor, points: torch.Tensor):
    projected = torch.cat((points, torch.ones_like(points[..., :1])), -1) @ H.transpose(-1, -2)
    w = projected[..., 2]
    safe = torch.where(w.abs() > 1e-12, w, torch.full_like(w, 1e-12))
    return projected[..., :2] / safe[..., None], w > 0


def _warp_field(batch: dict, points: torch.Tensor):
    """Bilinear ``warp0`` at ``points`` of image 0 -> image-1 pixels, valid where the footprint is all valid."""
    warp0, valid0 = batch["warp0"], batch["valid0"]
    height0, width0 = warp0.shape[1:3]
    height1, width1 = batch["image1"].shape[-2:]
    grid = pixel_to_normalized(points, width0, height0)[:, :, None].to(warp0.dtype)
    sample = dict(mode="bilinear", padding_mode="zeros", align_corners=False)
    warped = F.grid_sample(warp0.permute(0, 3, 1, 2), grid, **sample)[..., 0].transpose(1, 2)
    footprint = F.grid_sample(valid0[:, None].to(warp0.dtype), grid, **sample)[:, 0, :, 0]
    return normalized_to_pixel(warped, width1, height1), footprint > 1 - 1e-4


def warp_points(points: torch.Tensor, batch: dict, reverse: bool = False, rel_depth_tol: float | None = 0.2):
    """Warp points ``(B, L, 2)`` of image 0 into image 1 (``reverse``: image 1 into image 0).

    Returns ``(uv (B, L, 2), valid (B, L) bool)`` in OpenCV pixels, or ``None`` when the batch cannot warp in
    that direction (``reverse`` with only ``warp0``). Never differentiable (ground truth).
    """
    source = geometry_source(batch)
    points = points.detach()
    with torch.no_grad():
        if source == "depth":
            T_0to1 = batch["T_0to1"].to(points.dtype)
            a, b = ("0", "1") if not reverse else ("1", "0")
            T = torch.linalg.inv(T_0to1) if reverse else T_0to1
            uv, valid = warp_points_depth(points, batch[f"depth{a}"], batch[f"depth{b}"],
                                          batch[f"K{a}"].to(points.dtype), batch[f"K{b}"].to(points.dtype), T,
                                          rel_depth_tol)
            if not reverse and "valid0" in batch:  # synthetic pairs: valid0 also knows the holes of view 1
                valid &= _nearest(batch["valid0"].to(torch.uint8), points).bool()
            return uv, valid
        if source == "homography":
            H = batch["H_0to1"].to(points.dtype)
            uv, front = _apply_homography(torch.linalg.inv(H) if reverse else H, points)
            height, width = batch["image0" if reverse else "image1"].shape[-2:]
            return uv, front & _inside(uv, height, width)
        if reverse:
            return None
        uv, valid = _warp_field(batch, points)
        height, width = batch["image1"].shape[-2:]
        return uv, valid & _inside(uv, height, width)


def cell_points(batch_size: int, hw: tuple[int, int], config: CoarseSupervision, device, dtype=torch.float32):
    """Sample points ``(B, h*w, 2)`` of the coarse cells, row-major (OpenCV pixels)."""
    h, w = hw
    y, x = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                          indexing="ij")
    grid = torch.stack((x, y), -1).reshape(1, h * w, 2) * config.scale + config.cell_offset
    return grid.expand(batch_size, -1, -1)


def _cell_index(uv: torch.Tensor, valid: torch.Tensor, hw: tuple[int, int], config: CoarseSupervision):
    """Index of the nearest cell sample point (-1 where invalid or outside the grid)."""
    h, w = hw
    cell = torch.floor((uv - config.cell_offset) / config.scale + 0.5)
    inside = (cell[..., 0] >= 0) & (cell[..., 0] < w) & (cell[..., 1] >= 0) & (cell[..., 1] < h)
    index = (cell[..., 1] * w + cell[..., 0]).long()
    return torch.where(valid & inside, index, torch.full_like(index, -1))


def _mutual(index01: torch.Tensor, index10: torch.Tensor) -> torch.Tensor:
    """Cells ``i`` of image 0 with ``index10[index01[i]] == i`` (both ``(B, L)``, -1 = none)."""
    back = torch.gather(index10, 1, index01.clamp(min=0))
    own = torch.arange(index01.shape[1], device=index01.device)
    return (index01 >= 0) & (back == own)


def _one_to_one(index01: torch.Tensor, distance: torch.Tensor, size1: int) -> torch.Tensor:
    """Without a reverse warp: among the cells of image 0 mapping to one cell, keep the closest."""
    big = torch.finfo(distance.dtype).max
    dist = torch.where(index01 >= 0, distance, torch.full_like(distance, big))
    best = torch.full((index01.shape[0], size1 + 1), big, dtype=dist.dtype, device=dist.device)
    slot = torch.where(index01 >= 0, index01, torch.full_like(index01, size1))
    best.scatter_reduce_(1, slot, dist, reduce="amin")
    return (index01 >= 0) & (dist <= torch.gather(best, 1, slot))


def _targets(index01, keep, size1, w_pt0, pt0, pt1, valid0):
    conf_matrix_gt = torch.zeros(index01.shape[0], index01.shape[1], size1, device=index01.device)
    b_ids, i_ids = torch.where(keep)
    j_ids = index01[b_ids, i_ids]
    conf_matrix_gt[b_ids, i_ids, j_ids] = 1
    return {
        "conf_matrix_gt": conf_matrix_gt,
        "spv_b_ids": b_ids, "spv_i_ids": i_ids, "spv_j_ids": j_ids,
        "spv_w_pt0_i": w_pt0, "spv_w_pt0_valid": valid0, "spv_pt0_i": pt0, "spv_pt1_i": pt1,
    }


def coarse_targets(batch: dict, hw0_c: tuple[int, int], hw1_c: tuple[int, int],
                   config: CoarseSupervision = CoarseSupervision(), *, stride: int | None = None,
                   keypoints0: torch.Tensor | None = None, keypoints1: torch.Tensor | None = None,
                   radius: float = 16.0) -> dict:
    """LoFTR-style coarse ground truth between the cell grids of the two images.

    Args:
        batch: pair-sample batch (``image0/image1 (B, C, H, W)`` and its geometry, see module doc).
        hw0_c, hw1_c: coarse grid sizes ``(h, w)`` (the network's 1/``scale`` feature maps).
        config: cell size, cell sample point and depth tolerance; ``stride`` overrides ``config.scale``.
        keypoints0, keypoints1: ``(B, L0, 2)``, ``(B, L1, 2)`` one keypoint per cell (S2LD): the keypoint
            variant :func:`keypoint_targets` with ``radius`` is used instead of the cell sample points.

    Returns a dict with ``conf_matrix_gt (B, L0, L1)`` float {0, 1}; ``spv_b_ids, spv_i_ids, spv_j_ids (M,)``
    long (the ground-truth coarse matches); ``spv_w_pt0_i (B, L0, 2)`` the warped sample points of image 0
    (pixels of image 1) with ``spv_w_pt0_valid (B, L0)``; ``spv_pt0_i (B, L0, 2)``, ``spv_pt1_i (B, L1, 2)``
    the sample points.
    """
    if stride is not None:
        config = replace(config, scale=stride)
    if keypoints0 is not None or keypoints1 is not None:
        if keypoints0 is None or keypoints1 is None:
            raise InputShapeError("coarse_targets needs both keypoints0 and keypoints1, or neither")
        return keypoint_targets(batch, keypoints0, keypoints1, radius, config.rel_depth_tol)
    image0 = batch["image0"]
    B, device = image0.shape[0], image0.device
    pt0 = cell_points(B, hw0_c, config, device)
    pt1 = cell_points(B, hw1_c, config, device)
    size1 = hw1_c[0] * hw1_c[1]
    w_pt0, valid0 = warp_points(pt0, batch, rel_depth_tol=config.rel_depth_tol)
    index01 = _cell_index(w_pt0, valid0, hw1_c, config)
    back = warp_points(pt1, batch, reverse=True, rel_depth_tol=config.rel_depth_tol)
    if back is not None:
        keep = _mutual(index01, _cell_index(back[0], back[1], hw0_c, config))
    else:
        target = torch.gather(pt1, 1, index01.clamp(min=0)[..., None].expand(-1, -1, 2))
        keep = _one_to_one(index01, (w_pt0 - target).norm(dim=-1), size1)
    return _targets(index01, keep, size1, w_pt0, pt0, pt1, valid0)


def keypoint_targets(batch: dict, kpts0: torch.Tensor, kpts1: torch.Tensor, radius: float = 16.0,
                     rel_depth_tol: float | None = 0.2) -> dict:
    """S2LD's keypoint ground truth (``spvs_coarse_kp``): one keypoint per coarse cell.

    Each cell's keypoint ``kpts0 (B, L0, 2)`` (OpenCV pixels) is warped into image 1 and paired with the
    nearest keypoint of ``kpts1 (B, L1, 2)`` within ``radius`` pixels, and vice versa; mutual pairs are the
    ground truth. With only ``warp0`` the reverse test is the one-to-one rule of the module doc. Returns the
    keys of :func:`coarse_targets`, with ``spv_pt0_i = kpts0`` and ``spv_pt1_i = kpts1`` (detached).
    """
    kpts0, kpts1 = kpts0.detach(), kpts1.detach()
    w_pt0, valid0 = warp_points(kpts0, batch, rel_depth_tol=rel_depth_tol)
    dist01 = torch.cdist(w_pt0, kpts1)
    d01, index01 = dist01.min(dim=2)
    index01 = torch.where(valid0 & (d01 <= radius), index01, torch.full_like(index01, -1))
    back = warp_points(kpts1, batch, reverse=True, rel_depth_tol=rel_depth_tol)
    if back is not None:
        d10, index10 = torch.cdist(back[0], kpts0).min(dim=2)
        index10 = torch.where(back[1] & (d10 <= radius), index10, torch.full_like(index10, -1))
        keep = _mutual(index01, index10)
    else:
        keep = _one_to_one(index01, d01, kpts1.shape[1])
    return _targets(index01, keep, kpts1.shape[1], w_pt0, kpts0, kpts1, valid0)


def fine_offset_targets(spv: dict, b_ids, i_ids, j_ids, scale: float = 2.0, radius: float = 2.0):
    """Fine ground truth of LoFTR / S2LD (``spvs_fine``) for the coarse matches ``(b_ids, i_ids, j_ids)``.

    ``(w_pt0 - pt1) / scale / radius`` (``scale`` = pixels per fine-map pixel, ``radius`` = fine window
    half-size), the offset of image 0's warped point from image 1's window centre in window units, and its
    validity (warp known). Returns ``(expec_f_gt (M, 2), valid (M,))``; ``|gt| > 1`` is outside the window.
    """
    w_pt0 = spv["spv_w_pt0_i"][b_ids, i_ids]
    gt = (w_pt0 - spv["spv_pt1_i"][b_ids, j_ids]) / scale / radius
    return gt, spv["spv_w_pt0_valid"][b_ids, i_ids]
