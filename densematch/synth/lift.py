"""Lifting an image with a depth map to a 3D triangle mesh with one vertex per pixel.

The vertex of pixel ``(u, v)`` (OpenCV pixel centre) is ``depth[v, u] * K^-1 [u, v, 1]`` in the camera
frame of the image. Every 2x2 block of pixels gives two triangles, ``(tl, bl, br)`` and ``(br, tr, tl)``
(the split of L2M's renderer). A triangle is

* *renderable* when its three vertices have a depth (known depth or backdrop, e.g. sky placed far away);
* *stretched* when it is seen almost edge-on from the source camera (the angle between its normal and the
  viewing ray exceeds ``max_slant_deg``): such triangles bridge depth discontinuities (a foreground edge
  and the background behind it), so they are rendered, to occlude what lies behind them, but whatever
  they cover in a novel view is a hole;
* *known* when its three vertices have a known (ground-truth) depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InputShapeError
from ..geometry.warps import pixel_grid, unproject


@dataclass
class GridMesh:
    """A mesh lifted from a ``(H, W)`` depth map (vertex ``v * W + u`` is pixel ``(u, v)``).

    Attributes:
        points: ``(H, W, 3)`` vertices in the source camera frame (0 where the pixel has no depth).
        known: ``(H, W)`` bool: the vertex depth is ground truth.
        renderable: ``(H, W)`` bool: the vertex has a depth to render with (known or backdrop).
        faces: ``(F, 3)`` int64 vertex indices, ``F = 2 (H - 1) (W - 1)``.
        face_renderable, face_known, face_stretched: ``(F,)`` bool per-triangle flags (see module doc).
    """

    points: torch.Tensor
    known: torch.Tensor
    renderable: torch.Tensor
    faces: torch.Tensor
    face_renderable: torch.Tensor
    face_known: torch.Tensor
    face_stretched: torch.Tensor

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the source image."""
        return self.points.shape[1], self.points.shape[0]

    @property
    def face_hole(self) -> torch.Tensor:
        """``(F,)`` bool: what the triangle covers in a novel view has no ground truth to trust.

        Stretched triangles, and triangles mixing known-depth and backdrop vertices.
        """
        backdrop_only = self.face_renderable & ~self.face_known & ~_any_corner(self.known)
        return self.face_stretched | (self.face_renderable & ~self.face_known & ~backdrop_only)


def grid_faces(height: int, width: int, *, device=None) -> torch.Tensor:
    """``(2 (H-1) (W-1), 3)`` vertex indices of the two triangles of every 2x2 pixel block.

    The first half are the ``(tl, bl, br)`` triangles, the second half the ``(br, tr, tl)`` ones, each in
    row-major block order.
    """
    index = torch.arange(height * width, device=device, dtype=torch.int64).reshape(height, width)
    tl, tr = index[:-1, :-1].reshape(-1), index[:-1, 1:].reshape(-1)
    bl, br = index[1:, :-1].reshape(-1), index[1:, 1:].reshape(-1)
    return torch.cat((torch.stack((tl, bl, br), dim=1), torch.stack((br, tr, tl), dim=1)))


def lift_depth(
    depth: torch.Tensor,
    K: torch.Tensor,
    *,
    max_slant_deg: float = 86.0,
    backdrop_depth: torch.Tensor | None = None,
) -> GridMesh:
    """Lift a depth map to a :class:`GridMesh`.

    Args:
        depth: ``(H, W)`` depth (0 or non-finite = unknown), in the units of the scene.
        K: ``(3, 3)`` intrinsics of the image.
        max_slant_deg: triangles whose normal makes a larger angle with the viewing ray are *stretched*.
        backdrop_depth: optional ``(H, W)`` depth used to render pixels of unknown depth (e.g. sky placed
            far away; 0 = not rendered). Such vertices are renderable but not known.
    """
    if depth.ndim != 2 or depth.shape[0] < 2 or depth.shape[1] < 2:
        raise InputShapeError(f"depth must be an (H, W) map with H, W >= 2, got {tuple(depth.shape)}")
    height, width = depth.shape
    depth = depth.to(torch.float32)
    known = torch.isfinite(depth) & (depth > 0)
    render_depth = torch.where(known, depth, torch.zeros_like(depth))
    renderable = known.clone()
    if backdrop_depth is not None:
        if backdrop_depth.shape != depth.shape:
            raise InputShapeError(
                f"backdrop depth {tuple(backdrop_depth.shape)} != depth {tuple(depth.shape)}"
            )
        extra = ~known & torch.isfinite(backdrop_depth) & (backdrop_depth > 0)
        render_depth = torch.where(extra, backdrop_depth.to(torch.float32), render_depth)
        renderable |= extra
    grid = pixel_grid(height, width, device=depth.device, dtype=torch.float32)
    points = unproject(grid.reshape(-1, 2), render_depth.reshape(-1), K.to(grid)).reshape(height, width, 3)
    faces = grid_faces(height, width, device=depth.device)
    face_renderable = _all_corners(renderable)
    face_known = _all_corners(known)
    a, b, c = grid_triangles(points).permute(1, 2, 0)  # corners, each (3, F)
    normal = _cross(b - a, c - a)
    ray = a + b + c
    dot = (normal[0] * ray[0] + normal[1] * ray[1] + normal[2] * ray[2]).abs()
    norms = (normal.square().sum(dim=0) * ray.square().sum(dim=0)).sqrt()
    cos = dot / norms.clamp(min=1e-30)
    stretched = face_renderable & (cos < math.cos(math.radians(max_slant_deg)))
    return GridMesh(points, known, renderable, faces, face_renderable, face_known, stretched)


def grid_triangles(values: torch.Tensor) -> torch.Tensor:
    """Per-vertex values ``(H, W, C)`` -> ``(F, 3, C)`` at the corners of the :func:`grid_faces` triangles.

    Equal to ``values.reshape(-1, C)[grid_faces(H, W)]``, built from slices (much faster than a gather). The
    result is a view of a ``(C, 3, F)``-contiguous tensor, the layout
    :func:`~densematch.synth.raster.rasterize` works in.
    """
    height, width, channels = values.shape
    planar = values.permute(2, 0, 1)
    out = values.new_empty(channels, 3, 2, height - 1, width - 1)
    tl, tr, bl, br = planar[:, :-1, :-1], planar[:, :-1, 1:], planar[:, 1:, :-1], planar[:, 1:, 1:]
    for corner, (first, second) in enumerate(((tl, br), (bl, tr), (br, tl))):
        out[:, corner, 0] = first
        out[:, corner, 1] = second
    return out.reshape(channels, 3, -1).permute(2, 1, 0)


def _all_corners(mask: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` per-vertex bool -> ``(F,)``: all three corners of each grid triangle are set."""
    tl, tr, bl, br = mask[:-1, :-1], mask[:-1, 1:], mask[1:, :-1], mask[1:, 1:]
    return torch.cat(((tl & bl & br).reshape(-1), (br & tr & tl).reshape(-1)))


def _cross(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross product of ``(3, N)`` vectors stored as rows."""
    return torch.stack((x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0]))


def _any_corner(mask: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` per-vertex bool -> ``(F,)``: some corner of each grid triangle is set."""
    return ~_all_corners(~mask)
