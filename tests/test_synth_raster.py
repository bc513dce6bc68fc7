"""The z-buffered triangle rasteriser against hand-computed cases and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densematch.errors import InputShapeError
from densematch.synth.raster import rasterize


def brute_force(triangles: np.ndarray, height: int, width: int):
    """Reference: for every pixel centre and every triangle, float64 barycentrics and the nearest depth."""
    face = -np.ones((height, width), dtype=np.int64)
    depth = np.full((height, width), np.inf)
    for index, ((ua, va, za), (ub, vb, zb), (uc, vc, zc)) in enumerate(triangles.astype(np.float64)):
        area = (ub - ua) * (vc - va) - (uc - ua) * (vb - va)
        if abs(area) < 1e-12 or min(za, zb, zc) <= 0:
            continue
        for v in range(height):
            for u in range(width):
                l0 = ((ub - u) * (vc - v) - (uc - u) * (vb - v)) / area
                l1 = ((uc - u) * (va - v) - (ua - u) * (vc - v)) / area
                l2 = 1 - l0 - l1
                if min(l0, l1, l2) < 1e-9:  # strictly inside (away from shared edges)
                    continue
                z = 1 / (l0 / za + l1 / zb + l2 / zc)
                if z < depth[v, u]:
                    depth[v, u], face[v, u] = z, index
    return face, np.where(np.isfinite(depth), depth, 0)


def test_single_triangle_by_hand():
    # right triangle with legs along the axes: covers pixel centres with u + v <= 4 (u, v >= 0)
    tri = torch.tensor([[[0.0, 0.0, 2.0], [4.0, 0.0, 2.0], [0.0, 4.0, 2.0]]])
    fragments = rasterize(tri, 6, 6)
    expected = np.array([[u + v <= 4 for u in range(6)] for v in range(6)])
    assert np.array_equal(fragments.covered.numpy(), expected)
    assert torch.allclose(fragments.depth[fragments.covered], torch.tensor(2.0))
    # barycentrics at pixel (u=1, v=2): weights of vertices (a, b, c) = (1 - 1/4 - 2/4, 1/4, 2/4)
    assert torch.allclose(fragments.weights[2, 1], torch.tensor([0.25, 0.25, 0.5]), atol=1e-6)
    assert torch.equal(fragments.face[fragments.covered], torch.zeros(int(expected.sum()), dtype=torch.int64))


@pytest.mark.parametrize("shift", [1e-6, -1e-6])
def test_vertices_a_rounding_error_beside_pixel_centres_keep_their_pixels(shift):
    # a square of two triangles whose corners lie 1e-6 px off the centres (0, 0) and (5, 5), as an identity
    # reprojection gives: the inside test accepts them (tolerance), so must the bounding box
    lo, hi = 0.0 + shift, 5.0 - shift
    quad = [[lo, lo, 1.0], [hi, lo, 1.0], [hi, hi, 1.0], [lo, hi, 1.0]]
    tris = torch.tensor([[quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]])
    fragments = rasterize(tris, 6, 6)
    assert fragments.covered.all()


def test_perspective_correct_depth_and_weights():
    # a slanted triangle: the weights must reproduce the 3D point seen at each pixel
    K = torch.tensor([[10.0, 0, 8], [0, 10.0, 8], [0, 0, 1]])
    points = torch.tensor([[-0.5, -0.5, 1.0], [0.9, -0.4, 3.0], [-0.3, 0.8, 2.0]])
    uv = points @ K.T
    tri = torch.cat((uv[:, :2] / uv[:, 2:], points[:, 2:]), dim=1)[None]
    fragments = rasterize(tri, 16, 16)
    covered = fragments.covered
    assert covered.sum() > 20
    surface = fragments.weights[covered] @ points  # (P, 3)
    projected = surface @ K.T
    pixel = projected[:, :2] / projected[:, 2:]
    v, u = torch.nonzero(covered, as_tuple=True)
    assert torch.allclose(pixel, torch.stack((u, v), dim=1).float(), atol=1e-4)
    assert torch.allclose(surface[:, 2], fragments.depth[covered], rtol=1e-5)
    assert torch.allclose(fragments.weights[covered].sum(-1), torch.ones(int(covered.sum())), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_random_soup(seed):
    rng = np.random.default_rng(seed)
    height, width = 20, 24
    count = 40
    centres = rng.uniform([-2, -2], [width + 2, height + 2], size=(count, 1, 2))
    sizes = rng.choice([0.8, 2.5, 6.0, 30.0], size=(count, 1, 1))  # pixel-sized to larger than the image
    uv = centres + rng.normal(size=(count, 3, 2)) * sizes
    z = rng.uniform(0.5, 5.0, size=(count, 3, 1))
    triangles = np.concatenate((uv, z), axis=2).astype(np.float32)
    fragments = rasterize(torch.from_numpy(triangles), height, width)
    face_ref, depth_ref = brute_force(triangles, height, width)
    strict = face_ref >= 0
    # wherever the reference sees a triangle strictly inside, we see the same one (or one at equal depth)
    got_depth = fragments.depth.numpy()
    assert np.allclose(got_depth[strict], depth_ref[strict], rtol=1e-4)
    same = fragments.face.numpy()[strict] == face_ref[strict]
    assert same.mean() > 0.99
    # and nothing is covered that the reference leaves empty, except pixels exactly on an edge
    extra = fragments.covered.numpy() & ~strict
    assert extra.sum() <= 0.02 * height * width


def test_closer_triangle_wins_and_ties_are_stable():
    far = [[0.0, 0.0, 5.0], [10.0, 0.0, 5.0], [0.0, 10.0, 5.0]]
    near = [[0.0, 0.0, 1.0], [10.0, 0.0, 1.0], [0.0, 10.0, 1.0]]
    fragments = rasterize(torch.tensor([far, near]), 8, 8)
    assert (fragments.face[fragments.covered] == 1).all()
    fragments = rasterize(torch.tensor([near, near]), 8, 8)  # exact tie: the lower index wins
    assert (fragments.face[fragments.covered] == 0).all()


def test_shared_edges_leave_no_gaps():
    # a fine grid of 2 triangles per cell, slightly rotated and scaled: every interior pixel is covered once
    n = 12
    v, u = np.mgrid[0:n, 0:n].astype(np.float32)
    angle = 0.3
    x = 3 + 1.37 * (np.cos(angle) * u - np.sin(angle) * v) + 6
    y = 2 + 1.37 * (np.sin(angle) * u + np.cos(angle) * v)
    grid = np.stack((x, y, np.ones_like(x)), axis=-1)
    tris = []
    for i in range(n - 1):
        for j in range(n - 1):
            tris.append([grid[i, j], grid[i + 1, j], grid[i + 1, j + 1]])
            tris.append([grid[i + 1, j + 1], grid[i, j + 1], grid[i, j]])
    fragments = rasterize(torch.tensor(np.array(tris)), 24, 24)
    # pixels well inside the mesh footprint must all be covered
    corners = np.array([grid[0, 0], grid[0, -1], grid[-1, -1], grid[-1, 0]])[:, :2]
    inside = _inside_convex(corners, 24, 24, margin=0.8)
    assert fragments.covered.numpy()[inside].all()


def _inside_convex(polygon: np.ndarray, height: int, width: int, margin: float) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width]
    points = np.stack((u, v), axis=-1).astype(np.float64)
    inside = np.ones((height, width), dtype=bool)
    for a, b in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        edge = b - a
        normal = np.array([-edge[1], edge[0]]) / np.linalg.norm(edge)
        side = (points - a) @ normal
        inside &= side * np.sign((polygon.mean(0) - a) @ normal) > margin
    return inside


def test_skips_triangles_behind_the_camera_and_non_finite():
    behind = [[0.0, 0.0, -1.0], [10.0, 0.0, 2.0], [0.0, 10.0, 2.0]]
    broken = [[0.0, 0.0, float("nan")], [10.0, 0.0, 2.0], [0.0, 10.0, 2.0]]
    degenerate = [[0.0, 0.0, 1.0], [5.0, 5.0, 1.0], [10.0, 10.0, 1.0]]
    fragments = rasterize(torch.tensor([behind, broken, degenerate]), 8, 8)
    assert not fragments.covered.any()
    assert (fragments.depth == 0).all()


def test_empty_and_bad_shapes():
    fragments = rasterize(torch.zeros(0, 3, 3), 4, 5)
    assert fragments.face.shape == (4, 5) and not fragments.covered.any()
    with pytest.raises(InputShapeError):
        rasterize(torch.zeros(3, 3), 4, 4)
    with pytest.raises(InputShapeError):
        rasterize(torch.zeros(1, 3, 3), 0, 4)


def test_interpolate_vertex_attributes():
    tri = torch.tensor([[[0.0, 0.0, 1.0], [8.0, 0.0, 1.0], [0.0, 8.0, 1.0]]])
    fragments = rasterize(tri, 8, 8)
    colours = torch.eye(3)
    image = fragments.interpolate(colours, torch.tensor([[0, 1, 2]]))
    assert torch.allclose(image[0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(image[0, 4], torch.tensor([0.5, 0.5, 0.0]))
    assert (image[7, 7] == 0).all()  # outside the triangle
