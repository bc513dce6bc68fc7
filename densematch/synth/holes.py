"""Which source pixels keep a trustworthy correspondence in the rendered view (``valid0``).

A source pixel ``p0`` is *covisible* when

1. its depth is known, it lies in front of camera 1 and projects inside image 1 (``uv1`` is computed with
   the same functions as :func:`~densematch.geometry.warps.warp_from_depth`, so it is the same warp);
2. the four pixels of image 1 around its projection ``uv1`` (the footprint of a bilinear lookup) are all
   inside the image, none is a hole (uncovered, a stretched triangle across a depth edge, unknown depth),
   and each shows the surface of ``p0``: its depth is within ``footprint_depth_tol`` (relative) of ``p0``'s
   depth in camera 1, or (for steep surfaces, whose depth changes quickly from pixel to pixel) it shows a
   source point within ``source_radius`` pixels of ``p0`` while no depth edge (stretched triangle) lies that
   close to ``p0`` in the source image;
3. the rendered depth of image 1, bilinearly interpolated at ``uv1``, agrees with ``p0``'s depth in camera 1
   within ``rel_depth_tol`` (relative): otherwise another surface occludes it.

Rule 2 is deliberately conservative (it drops a band of about one pixel along holes and occlusion edges) so
that, for every valid pixel, colour and depth of image 1 looked up at ``uv1`` come from the surface of ``p0``
and never from a hole, an inpainted region or an occluder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..geometry.warps import pixel_grid, project, transform, unproject


def covisible_mask(
    depth0: torch.Tensor,
    K0: torch.Tensor,
    K1: torch.Tensor,
    T_0to1: torch.Tensor,
    depth1: torch.Tensor,
    hole1: torch.Tensor,
    *,
    source_uv1: torch.Tensor | None = None,
    edge0: torch.Tensor | None = None,
    rel_depth_tol: float = 0.01,
    footprint_depth_tol: float = 0.05,
    source_radius: int = 3,
    projected: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``valid0`` ``(H0, W0)`` bool and ``uv1`` ``(H0, W0, 2)`` (OpenCV pixels in image 1): see the module.

    Args:
        depth0: ``(H0, W0)`` source depth, 0 = unknown.
        K0, K1, T_0to1: the cameras (``(3, 3)``, ``(3, 3)``, ``(4, 4)``).
        depth1: ``(H1, W1)`` rendered depth, 0 = unknown.
        hole1: ``(H1, W1)`` bool hole mask of image 1.
        source_uv1: optional ``(H1, W1, 2)`` source pixel seen at each pixel of image 1 (enables the
            steep-surface rule); ``edge0`` ``(H0, W0)`` bool marks source pixels touching a depth edge.
        rel_depth_tol: relative depth agreement of the bilinear lookup (occlusion test).
        footprint_depth_tol: relative depth agreement of each of the four footprint pixels.
        source_radius: how far (source pixels, Chebyshev) a footprint pixel's source point may be from ``p0``.
        projected: optional ``(uv1, z1)`` of every source pixel in camera 1, when already computed with the
            same functions (:class:`~densematch.synth.render.NovelView` ``vertex_uv``, ``vertex_depth``).
    """
    height1, width1 = depth1.shape
    height0, width0 = depth0.shape
    depth0 = depth0.to(torch.float32)
    K0, K1, T_0to1 = (m.to(depth0) for m in (K0, K1, T_0to1))
    known = torch.isfinite(depth0) & (depth0 > 0)
    grid = pixel_grid(height0, width0, device=depth0.device, dtype=depth0.dtype)
    if projected is None:
        flat_depth = torch.where(known, depth0, 0.0).reshape(-1)
        points1 = transform(unproject(grid.reshape(-1, 2), flat_depth, K0), T_0to1)
        uv1, z1 = project(points1, K1)  # exactly as in warp_from_depth
        uv1, z1 = uv1.reshape(height0, width0, 2), z1.reshape(height0, width0)
    else:
        uv1, z1 = projected
    left = torch.floor(uv1[..., 0])
    top = torch.floor(uv1[..., 1])
    valid = known & (z1 > 0) & (left >= 0) & (top >= 0) & (left <= width1 - 2) & (top <= height1 - 2)
    solid_depth = torch.where(~hole1 & (depth1 > 0), depth1.to(torch.float32), float("nan")).reshape(-1)
    if source_uv1 is not None:
        source_u1, source_v1 = source_uv1[..., 0].reshape(-1), source_uv1[..., 1].reshape(-1)
        interior = ~_dilate(edge0, source_radius) if edge0 is not None else torch.ones_like(known)
    corner = (top.clamp(0, height1 - 2) * width1 + left.clamp(0, width1 - 2)).long()
    fx, fy = uv1[..., 0] - left, uv1[..., 1] - top
    looked_up = torch.zeros_like(z1)
    weights = ((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy)
    for offset, weight in zip((0, 1, width1, width1 + 1), weights, strict=True):
        index = corner + offset
        neighbour = torch.take(solid_depth, index)
        same_surface = (neighbour - z1).abs() <= footprint_depth_tol * z1  # false for holes (nan)
        if source_uv1 is not None:
            distance = torch.maximum(
                (torch.take(source_u1, index) - grid[..., 0]).abs(),
                (torch.take(source_v1, index) - grid[..., 1]).abs(),
            )
            same_surface |= interior & (distance <= source_radius) & ~torch.isnan(neighbour)
        valid &= same_surface
        looked_up += weight * torch.nan_to_num(neighbour)
    valid &= (looked_up - z1).abs() <= rel_depth_tol * z1
    return valid, uv1


def edge_pixels(face_stretched: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(H, W)`` bool: source pixels that are a corner of a stretched (depth-edge) grid triangle."""
    cells = face_stretched.reshape(2, height - 1, width - 1).any(dim=0).to(torch.float32)
    touched = F.max_pool2d(F.pad(cells, (1, 1, 1, 1))[None, None], kernel_size=2, stride=1)[0, 0]
    return touched > 0


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return mask
    size = 2 * radius + 1  # separable: a row pass, then a column pass
    pooled = F.max_pool2d(
        mask.to(torch.float32)[None, None], kernel_size=(1, size), stride=1, padding=(0, radius)
    )
    pooled = F.max_pool2d(pooled, kernel_size=(size, 1), stride=1, padding=(radius, 0))
    return pooled[0, 0] > 0
