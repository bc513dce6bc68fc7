"""Rendering a lifted image from a new camera: colour, depth, holes and the exact inverse warp.

For each pixel ``p1`` of the novel view the rasteriser gives the visible triangle and the perspective-correct
weights of its vertices, hence the exact 3D surface point ``X0`` (source camera frame) seen at ``p1``.
Projecting ``X0`` into the source image gives ``source_uv``, the sub-pixel source position of ``p1``; the
colour of ``p1`` is the source image sampled there (bilinear). By construction
``project(transform(X0, T_0to1), K1) == p1`` and ``depth[p1] == transform(X0, T_0to1).z``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..conventions import pixel_to_normalized
from ..errors import InputShapeError
from ..geometry.warps import pixel_grid, project, transform, unproject
from .lift import GridMesh, grid_triangles
from .raster import rasterize


@dataclass
class NovelView:
    """A rendered view of ``(H, W)`` pixels (all tensors on the render device).

    Attributes:
        image: ``(3, H, W)`` float RGB in [0, 1], the source colour at ``source_uv``; 0 where uncovered.
        depth: ``(H, W)`` ground-truth depth in the new camera; 0 in holes and on the backdrop.
        hole: ``(H, W)`` bool: no ground truth here (uncovered, stretched triangle, unknown depth).
        backdrop: ``(H, W)`` bool: covered by backdrop triangles (e.g. sky): colour is fine, depth unknown.
        source_uv: ``(H, W, 2)`` OpenCV pixel of the source image seen at each pixel (where covered).
        surface_depth: ``(H, W)`` depth of whatever surface covers the pixel, holes included (for shading);
            0 where uncovered.
        vertex_uv, vertex_depth: ``(H0, W0, 2)`` and ``(H0, W0)``: every source vertex projected into the new
            camera (pixel and depth; meaningful where the source depth is known).
    """

    image: torch.Tensor
    depth: torch.Tensor
    hole: torch.Tensor
    backdrop: torch.Tensor
    source_uv: torch.Tensor
    surface_depth: torch.Tensor
    vertex_uv: torch.Tensor | None = None
    vertex_depth: torch.Tensor | None = None


def render_novel_view(
    mesh: GridMesh,
    image0: torch.Tensor,
    K0: torch.Tensor,
    K1: torch.Tensor,
    T_0to1: torch.Tensor,
    size1: tuple[int, int] | None = None,
) -> NovelView:
    """Render the mesh lifted from ``image0`` in camera 1.

    Args:
        mesh: the lifted source image (:func:`~densematch.synth.lift.lift_depth`).
        image0: ``(3, H0, W0)`` float source image in [0, 1].
        K0, K1: ``(3, 3)`` intrinsics of the source and the new camera.
        T_0to1: ``(4, 4)`` source camera -> new camera.
        size1: ``(W1, H1)`` of the new image; default the source size.
    """
    width0, height0 = mesh.size
    if image0.ndim != 3 or image0.shape[0] != 3 or tuple(image0.shape[1:]) != (height0, width0):
        raise InputShapeError(
            f"image0 must be (3, {height0}, {width0}) like the mesh, got {tuple(image0.shape)}"
        )
    width1, height1 = size1 if size1 is not None else (width0, height0)
    device = mesh.points.device
    K0, K1, T_0to1 = (m.to(device=device, dtype=torch.float32) for m in (K0, K1, T_0to1))
    points0 = mesh.points.reshape(-1, 3)
    uv1, z1 = project(transform(points0, T_0to1), K1)
    table = torch.cat((uv1, z1[:, None]), dim=1)
    nan = torch.full_like(table, float("nan"))
    table = torch.where(mesh.renderable.reshape(-1, 1), table, nan)  # non-renderable triangles are skipped
    fragments = rasterize(grid_triangles(table.reshape(height0, width0, 3)), height1, width1)
    covered, face = fragments.covered, fragments.face

    # the surface point seen at each pixel, back in the source camera (same as interpolating the vertices)
    grid1 = pixel_grid(height1, width1, device=device, dtype=torch.float32).reshape(-1, 2)
    surface1 = unproject(grid1, fragments.depth.reshape(-1), K1)
    source_uv, _ = project(transform(surface1, torch.linalg.inv(T_0to1)), K0)
    source_uv = torch.where(covered[..., None], source_uv.reshape(height1, width1, 2), 0.0)
    image = sample_image(image0.to(device=device, dtype=torch.float32), source_uv)
    image = image * covered[None]

    safe_face = face.clamp(min=0)
    known = covered & mesh.face_known[safe_face]
    hole = ~covered | mesh.face_hole[safe_face]
    backdrop = covered & ~hole & ~known
    depth = torch.where(known & ~hole, fragments.depth, torch.zeros_like(fragments.depth))
    vertex_uv, vertex_depth = uv1.reshape(height0, width0, 2), z1.reshape(height0, width0)
    return NovelView(image, depth, hole, backdrop, source_uv, fragments.depth, vertex_uv, vertex_depth)


def sample_image(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample a ``(C, H, W)`` image at OpenCV pixel positions ``(..., 2)`` -> ``(C, ...)``.

    Positions outside the image take the nearest border value.
    """
    channels, height, width = image.shape
    grid = pixel_to_normalized(uv, width, height).reshape(1, -1, 1, 2).to(image.dtype)
    out = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(channels, *uv.shape[:-1])
