"""Ground-truth correspondences from depth and relative pose (the dense GT used everywhere).

All coordinates follow :mod:`densematch.conventions`: OpenCV pixels, ``T_0to1`` maps camera-0
points into camera 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..conventions import pixel_to_normalized


def pixel_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """OpenCV pixel centres ``(u, v)`` of an image, shape ``(height, width, 2)``."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack((u, v), dim=-1)


def unproject(uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pixels ``(..., N, 2)`` with depth ``(..., N)`` -> camera points ``(..., N, 3)``."""
    ones = torch.ones_like(uv[..., :1])
    rays = torch.cat((uv, ones), dim=-1) @ torch.linalg.inv(K).transpose(-1, -2)
    return rays * depth[..., None]


def project(points: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera points ``(..., N, 3)`` -> pixels ``(..., N, 2)`` and depth ``(..., N)``."""
    z = points[..., 2]
    homogeneous = points @ K.transpose(-1, -2)
    uv = homogeneous[..., :2] / z.clamp(min=1e-12)[..., None]
    return uv, z


def transform(points: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Apply a 4x4 rigid transform ``(..., 4, 4)`` to points ``(..., N, 3)``."""
    return points @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def warp_from_depth(
    depth0: torch.Tensor,
    K0: torch.Tensor,
    K1: torch.Tensor,
    T_0to1: torch.Tensor,
    depth1: torch.Tensor | None = None,
    size1: tuple[int, int] | None = None,
    rel_depth_tol: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where every pixel of image 0 lands in image 1.

    Args:
        depth0: ``(..., H0, W0)`` depth of image 0 (0 or non-finite = unknown), same units as ``T_0to1``.
        K0, K1: ``(..., 3, 3)`` intrinsics at the images' resolutions.
        T_0to1: ``(..., 4, 4)`` camera-0 -> camera-1 transform.
        depth1: optional ``(..., H1, W1)`` depth of image 1, for the occlusion check: a pixel is valid only
            when the depth of image 1 at the projection agrees with the projected depth within
            ``rel_depth_tol`` (relative).
        size1: ``(W1, H1)``; taken from ``depth1`` when not given, else assumed equal to image 0's.

    Returns:
        ``uv1`` ``(..., H0, W0, 2)`` OpenCV pixel coordinates in image 1, and ``valid`` ``(..., H0, W0)`` bool:
        known depth, in front of camera 1, inside image 1 and (with ``depth1``) not occluded.
    """
    height, width = depth0.shape[-2:]
    if size1 is None:
        size1 = (depth1.shape[-1], depth1.shape[-2]) if depth1 is not None else (width, height)
    w1, h1 = size1
    known = torch.isfinite(depth0) & (depth0 > 0)
    d0 = torch.where(known, depth0, torch.zeros_like(depth0))
    grid = pixel_grid(height, width, device=depth0.device, dtype=depth0.dtype)
    grid = grid.expand(*depth0.shape[:-2], height, width, 2).reshape(*depth0.shape[:-2], -1, 2)
    points0 = unproject(grid, d0.reshape(*depth0.shape[:-2], -1), K0)
    uv1, z1 = project(transform(points0, T_0to1), K1)
    uv1 = uv1.reshape(*depth0.shape, 2)
    z1 = z1.reshape(depth0.shape)
    inside = (uv1[..., 0] >= -0.5) & (uv1[..., 0] <= w1 - 0.5) & (uv1[..., 1] >= -0.5) & (uv1[..., 1] <= h1 - 0.5)
    valid = known & (z1 > 0) & inside
    if depth1 is not None:
        sampled = sample_map(depth1, uv1)
        agree = (sampled - z1).abs() < rel_depth_tol * z1.abs()
        valid = valid & agree & (sampled > 0)
    return uv1, valid


def sample_map(values: torch.Tensor, uv: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample a map ``(..., H, W)`` at OpenCV pixel positions ``(..., N, M, 2)`` -> ``(..., N, M)``.

    Outside the map the result is 0.
    """
    height, width = values.shape[-2:]
    lead = values.shape[:-2]
    flat = values.reshape(-1, 1, height, width)
    coords = pixel_to_normalized(uv, width, height).reshape(flat.shape[0], *uv.shape[-3:])
    out = F.grid_sample(
        torch.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0),
        coords.to(flat.dtype),
        mode=mode,
        padding_mode="zeros",
        align_corners=False,
    )
    return out.reshape(*lead, *uv.shape[-3:-1])
