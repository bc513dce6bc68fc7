"""A z-buffered triangle rasteriser in plain PyTorch (CPU and GPU), exact to float32.

Conventions (:mod:`densematch.conventions`): a triangle vertex is ``(u, v, z)`` with ``(u, v)`` OpenCV pixel
coordinates of the target image (the centre of pixel ``(i, j)`` is at ``u = j, v = i``) and ``z`` its
camera depth. A pixel is covered by a triangle when its *centre* lies inside the triangle (edges included,
up to a tolerance of ``1e-5`` in barycentric units, so that triangles sharing an edge leave no gap). Among
the triangles covering a pixel the one with the smallest depth at the pixel centre wins (ties: lowest
triangle index).

Depth is interpolated perspective-correctly: ``1 / z`` is affine in screen space over a planar triangle, so
``1 / z(p) = sum_i lambda_i(p) / z_i`` with the screen-space barycentrics ``lambda``. The returned weights
are the *perspective-correct* barycentrics ``w_i = (lambda_i / z_i) * z(p)``, i.e. the weights of the
triangle's 3D vertices for the surface point seen at the pixel: ``X(p) = sum_i w_i X_i`` exactly.

Algorithm: every triangle enumerates the pixel centres of its bounding box (triangles are bucketed by box
size, so the many pixel-sized triangles of a dense mesh cost a few vectorised operations; the boxes of
large triangles are cut into tiles and the tiles a triangle misses are dropped first), computes
barycentrics from edge functions, and writes a packed 64-bit key ``(float bits of depth) << 32 | index``
into the z-buffer with ``scatter_reduce(amin)``. Positive float32 values order like their bit patterns,
so the minimum key is the nearest triangle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputShapeError

_EMPTY = torch.iinfo(torch.int64).max
_INSIDE_TOL = 1e-5
_SMALL_BLOCKS = (1, 2, 3, 4)  # a triangle whose larger box side is < S is evaluated on an S x S block
_TILES = (16, 4)  # larger triangles: boxes are cut into 16x16 then 4x4 tiles; tiles they miss are skipped
_MAX_CANDIDATES = 1 << 22  # pixel candidates per vectorised step (bounds the memory)


@dataclass
class Fragments:
    """What the rasteriser sees at every pixel of a ``(H, W)`` target.

    Attributes:
        face: ``(H, W)`` int64 index of the visible triangle, ``-1`` where no triangle covers the pixel.
        weights: ``(H, W, 3)`` perspective-correct barycentric weights of that triangle's vertices (0 where
            ``face < 0``); they sum to 1.
        depth: ``(H, W)`` depth of the visible surface at the pixel centre, 0 where ``face < 0``.
    """

    face: torch.Tensor
    weights: torch.Tensor
    depth: torch.Tensor

    @property
    def covered(self) -> torch.Tensor:
        """``(H, W)`` bool: some triangle covers the pixel."""
        return self.face >= 0

    def interpolate(self, attributes: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Per-vertex ``attributes`` ``(V, C)`` of a mesh with ``faces`` ``(F, 3)`` -> ``(H, W, C)`` values.

        The interpolation is linear over each 3D triangle (perspective-correct); 0 where nothing is visible.
        """
        covered = self.covered
        out = attributes.new_zeros(*self.face.shape, attributes.shape[-1])
        corner_ids = faces[self.face[covered]]  # (P, 3)
        values = attributes[corner_ids]  # (P, 3, C)
        out[covered] = (values * self.weights[covered][..., None].to(values.dtype)).sum(dim=1)
        return out


def rasterize(triangles: torch.Tensor, height: int, width: int, *, near: float = 1e-6) -> Fragments:
    """Rasterise triangles into a ``height x width`` image with a z-buffer.

    Args:
        triangles: ``(F, 3, 3)`` float: for each triangle its three vertices ``(u, v, z)`` (pixels, depth).
            Triangles with a vertex at depth ``<= near`` or a non-finite coordinate are skipped (no
            clipping), as are degenerate (zero-area) ones. Either winding is accepted.
        height, width: the target image size in pixels.
        near: the near plane.

    Returns:
        :class:`Fragments` on the device of ``triangles`` (face indices refer to ``triangles``).
    """
    if triangles.ndim != 3 or triangles.shape[1:] != (3, 3):
        raise InputShapeError(f"triangles must have shape (F, 3, 3), got {tuple(triangles.shape)}")
    if height <= 0 or width <= 0:
        raise InputShapeError(f"the target size must be positive, got {width}x{height}")
    device = triangles.device
    table = triangles.to(torch.float32).permute(2, 1, 0).reshape(9, -1)  # rows: u_abc, v_abc, z_abc
    zbuffer = torch.full((height * width + 1,), _EMPTY, dtype=torch.int64, device=device)
    if table.shape[1] > 0:
        _fill_zbuffer(table, zbuffer, height, width, near)
    zbuffer = zbuffer[:-1].reshape(height, width)
    covered = zbuffer != _EMPTY
    face = torch.where(covered, zbuffer & 0xFFFFFFFF, torch.full_like(zbuffer, -1))
    weights, depth = _resolve(table, face, covered)
    return Fragments(face=face, weights=weights, depth=depth)


def _fill_zbuffer(table: torch.Tensor, zbuffer: torch.Tensor, height: int, width: int, near: float) -> None:
    """Scatter the packed (depth, index) key of every covered pixel candidate into ``zbuffer`` (amin)."""
    u, v, z = table[0:3], table[3:6], table[6:9]
    u_min, u_max, v_min, v_max = u.amin(dim=0), u.amax(dim=0), v.amin(dim=0), v.amax(dim=0)
    # the inside test accepts centres up to _INSIDE_TOL (barycentric) outside an edge, i.e. up to
    # _INSIDE_TOL x (the triangle's extent) pixels: the box is widened by as much, so that a vertex that
    # rounds to 1e-6 px beside a pixel centre (an identity reprojection) does not drop that pixel
    pad = torch.maximum(u_max - u_min, v_max - v_min).clamp_(min=1.0).mul_(_INSIDE_TOL)
    x0 = (u_min - pad).ceil_().clamp_(min=0)
    x1 = (u_max + pad).floor_().clamp_(max=width - 1)
    y0 = (v_min - pad).ceil_().clamp_(min=0)
    y1 = (v_max + pad).floor_().clamp_(max=height - 1)
    usable = (x1 >= x0) & (y1 >= y0) & (z.amin(dim=0) > near) & torch.isfinite(table.sum(dim=0))
    side = torch.where(usable, torch.maximum(x1 - x0, y1 - y0), -1.0)  # box side minus one; -1: skip
    full = torch.cat((table, torch.stack((x0, x1, y0, y1))))
    lower = 0.0
    for size in _SMALL_BLOCKS:
        members = ((side < size) & (side >= lower)).nonzero().squeeze(1)
        lower = size
        step = max(1, _MAX_CANDIDATES // (size * size))
        for start in range(0, members.numel(), step):
            chunk = members[start : start + step]
            consts = _edge_constants(full.index_select(1, chunk), width)
            _scatter_block(consts, chunk, size, width, height, zbuffer)
    large = (side >= lower).nonzero().squeeze(1)
    if large.numel() > 0:
        _scatter_tiled(_edge_constants(full.index_select(1, large), width), large, width, height, zbuffer)


def _edge_constants(rows: torch.Tensor, width: int) -> torch.Tensor:
    """Per-triangle constants ``(12, N)`` from ``(u_abc, v_abc, z_abc, x0, x1, y0, y1)`` rows ``(13, N)``.

    Rows 0-5: ``lambda_i(dx, dy) = c_i + a_i dx + b_i dy`` (i = 0, 1) relative to the box origin (small
    numbers: good float32 conditioning); rows 6-8: inverse vertex depths; rows 9-11: box width - 1, box
    height - 1 and the flat pixel index of the box origin. Degenerate triangles give non-finite
    barycentrics, which no inside test accepts.
    """
    x0, x1, y0, y1 = rows[9:13]
    ua, ub, uc = rows[0:3] - x0
    va, vb, vc = rows[3:6] - y0
    inv_area = 1.0 / ((ub - ua) * (vc - va) - (uc - ua) * (vb - va))
    return torch.stack(
        (
            (ub * vc - uc * vb) * inv_area,
            (vb - vc) * inv_area,
            (uc - ub) * inv_area,
            (uc * va - ua * vc) * inv_area,
            (vc - va) * inv_area,
            (ua - uc) * inv_area,
            1.0 / rows[6],
            1.0 / rows[7],
            1.0 / rows[8],
            x1 - x0,
            y1 - y0,
            y0 * width + x0,
        )
    )


def _scatter_tiled(
    consts: torch.Tensor, index: torch.Tensor, width: int, height: int, zbuffer: torch.Tensor
) -> None:
    """Large triangles: cut their boxes into tiles (coarse, then fine), drop the tiles a triangle misses."""
    for tile in _TILES:
        consts, index = _split_into_tiles(consts, index, tile, width)
    tile = _TILES[-1]
    step = _MAX_CANDIDATES // (tile * tile)
    for start in range(0, index.numel(), step):
        chunk = slice(start, start + step)
        _scatter_block(consts[:, chunk], index[chunk], tile, width, height, zbuffer)


def _split_into_tiles(
    consts: torch.Tensor, index: torch.Tensor, tile: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut every box into ``tile x tile`` pieces and keep the (triangle, piece) pairs that may be covered.

    Returns the constants of the kept pieces, re-expressed relative to each piece's origin (box clamped to
    the piece), and their triangle indices.
    """
    tiles_x = torch.div(consts[9].long(), tile, rounding_mode="floor") + 1
    tiles_y = torch.div(consts[10].long(), tile, rounding_mode="floor") + 1
    counts = tiles_x * tiles_y
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=consts.device), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(owner.numel(), device=consts.device) - first[owner]
    ox = ((local % tiles_x[owner]) * tile).to(consts.dtype)
    oy = (torch.div(local, tiles_x[owner], rounding_mode="floor") * tile).to(consts.dtype)
    edges = consts[0:6].index_select(1, owner)
    c0, a0, b0, c1, a1, b1 = edges
    c0 = c0 + a0 * ox + b0 * oy
    c1 = c1 + a1 * ox + b1 * oy
    c2, a2, b2 = 1.0 - c0 - c1, -(a0 + a1), -(b0 + b1)
    reach = float(tile - 1)
    hit = torch.ones_like(c0, dtype=torch.bool)
    for c, a, b in ((c0, a0, b0), (c1, a1, b1), (c2, a2, b2)):  # the largest lambda over the piece's pixels
        hit &= c + (a * reach).clamp(min=0) + (b * reach).clamp(min=0) >= -_INSIDE_TOL
    kept = hit.nonzero().squeeze(1)
    owner, ox, oy = owner[kept], ox[kept], oy[kept]
    rows = consts.index_select(1, owner)
    rows[0], rows[3] = c0[kept], c1[kept]
    rows[9] = (rows[9] - ox).clamp(max=tile - 1)
    rows[10] = (rows[10] - oy).clamp(max=tile - 1)
    rows[11] = rows[11] + oy * width + ox
    return rows, index[owner]


def _scatter_block(
    consts: torch.Tensor, index: torch.Tensor, size: int, width: int, height: int, zbuffer: torch.Tensor
) -> None:
    """Evaluate ``size x size`` pixel blocks of the triangles ``index`` and update the z-buffer."""
    c0, a0, b0, c1, a1, b1, iz0, iz1, iz2, box_w, box_h, base = (row[:, None] for row in consts)
    if size == 1:  # the whole box is the pixel at its origin
        lam0, lam1, pixel = c0, c1, base.to(torch.int64)
    else:
        offsets = torch.arange(size, device=consts.device, dtype=consts.dtype)
        dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
        dx, dy = dx.reshape(1, -1), dy.reshape(1, -1)
        lam0 = c0 + a0 * dx + b0 * dy
        lam1 = c1 + a1 * dx + b1 * dy
        pixel = (base + dy * width + dx).to(torch.int64).clamp_(max=height * width)
    lam2 = 1.0 - lam0 - lam1
    inv_depth = lam0 * iz0 + lam1 * iz1 + lam2 * iz2
    inside = (torch.minimum(torch.minimum(lam0, lam1), lam2) >= -_INSIDE_TOL) & (inv_depth > 0)
    if size > 1:
        inside &= (dx <= box_w) & (dy <= box_h)
    key = (1.0 / inv_depth).view(torch.int32).to(torch.int64)
    key = key.bitwise_left_shift_(32).bitwise_or_(index[:, None])
    key.masked_fill_(~inside, _EMPTY)  # candidates outside write the neutral key (any pixel)
    zbuffer.scatter_reduce_(0, pixel.reshape(-1), key.reshape(-1), reduce="amin")


def _resolve(
    table: torch.Tensor, face: torch.Tensor, covered: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Perspective-correct barycentrics and depth of the winning triangle at each covered pixel."""
    height, width = face.shape
    weights = torch.zeros(height, width, 3, dtype=torch.float32, device=face.device)
    depth = torch.zeros(height, width, dtype=torch.float32, device=face.device)
    pix = covered.reshape(-1).nonzero().squeeze(1)
    if pix.numel() == 0:
        return weights, depth
    rows = table.index_select(1, face.reshape(-1)[pix])  # (9, P)
    pu = (pix % width).to(torch.float32)
    pv = torch.div(pix, width, rounding_mode="floor").to(torch.float32)
    ua, ub, uc = rows[0] - pu, rows[1] - pu, rows[2] - pu  # vertices relative to the pixel centre
    va, vb, vc = rows[3] - pv, rows[4] - pv, rows[5] - pv
    edge_a = ub * vc - uc * vb
    edge_b = uc * va - ua * vc
    edge_c = ua * vb - ub * va
    area = edge_a + edge_b + edge_c
    lam = torch.stack((edge_a, edge_b, edge_c), dim=-1) / area[:, None]
    weighted = lam / rows[6:9].T
    inv_depth = weighted.sum(dim=-1)
    weights.view(-1, 3)[pix] = weighted / inv_depth[:, None]
    depth.view(-1)[pix] = 1.0 / inv_depth
    return weights, depth
