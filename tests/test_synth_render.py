"""Exactness of the rendered ground truth (lift -> render -> covisibility), by unprojecting/reprojecting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from densematch.geometry.warps import pixel_grid, project, sample_map, transform, unproject, warp_from_depth
from densematch.synth.camera import PoseRanges, sample_relative_pose
from densematch.synth.holes import covisible_mask, edge_pixels
from densematch.synth.lift import grid_faces, grid_triangles, lift_depth
from densematch.synth.prior import procedural_depth
from densematch.synth.render import render_novel_view, sample_image

SIZE = 96
K = torch.tensor([[60.0, 0.0, (SIZE - 1) / 2], [0.0, 60.0, (SIZE - 1) / 2], [0.0, 0.0, 1.0]])


def smooth_texture(size: int) -> torch.Tensor:
    v, u = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    return torch.stack(
        (0.2 + 0.6 * u / size, 0.3 + 0.5 * v / size, 0.5 + 0.3 * torch.sin(u / 9) * torch.cos(v / 7))
    )


def scene(seed: int):
    rng = np.random.default_rng(seed)
    depth = torch.from_numpy(procedural_depth(SIZE, SIZE, rng))
    T = torch.from_numpy(sample_relative_pose(rng, PoseRanges(), 1.0)).float()
    return depth, T


def render(depth, T, image=None):
    image = smooth_texture(SIZE) if image is None else image
    mesh = lift_depth(depth, K)
    novel = render_novel_view(mesh, image, K, K, T)
    edges = edge_pixels(mesh.face_stretched, SIZE, SIZE)
    options = dict(source_uv1=novel.source_uv, edge0=edges)
    valid0, uv1 = covisible_mask(
        depth, K, K, T, novel.depth, novel.hole, projected=(novel.vertex_uv, novel.vertex_depth), **options
    )
    recomputed = covisible_mask(depth, K, K, T, novel.depth, novel.hole, **options)
    assert torch.equal(valid0, recomputed[0]) and torch.equal(uv1[valid0], recomputed[1][valid0])
    return mesh, novel, valid0, uv1, image


def test_grid_triangles_equal_the_gather():
    values = torch.randn(5, 7, 3)
    assert torch.equal(grid_triangles(values), values.reshape(-1, 3)[grid_faces(5, 7)])


def test_identity_pose_reproduces_the_source():
    depth, _ = scene(0)
    mesh, novel, valid0, uv1, image = render(depth, torch.eye(4))
    assert torch.allclose(novel.image, image, atol=1e-5)
    assert torch.allclose(novel.depth[~novel.hole], depth[~novel.hole], rtol=1e-5)
    grid = pixel_grid(SIZE, SIZE)
    assert torch.allclose(uv1, grid, atol=1e-3)
    # valid0 lies within the known pixels with a hole-free 2x2 footprint, and contains all of those that are
    # away from depth edges (near edges, steep footprints must also pass the 5 % depth test)
    solid = ~novel.hole
    left, top = uv1[..., 0].floor().long().clamp(0, SIZE - 2), uv1[..., 1].floor().long().clamp(0, SIZE - 2)
    footprint = solid[top, left] & solid[top, left + 1] & solid[top + 1, left] & solid[top + 1, left + 1]
    footprint &= depth > 0
    near_edge = torch.nn.functional.max_pool2d(
        edge_pixels(mesh.face_stretched, SIZE, SIZE).float()[None, None], 7, stride=1, padding=3
    )[0, 0].bool()
    assert not (valid0 & ~footprint).any()
    inside = ((uv1 >= 0) & (uv1 < SIZE - 1)).all(dim=-1)
    assert valid0[footprint & ~near_edge & inside].all()
    assert valid0.float().mean() > 0.5


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_inverse_warp_is_exact(seed):
    """Every non-hole pixel of image1 sees a surface point whose reprojection is that pixel."""
    depth, T = scene(seed)
    mesh, novel, _, _, _ = render(depth, T)
    # an independent path: interpolate the mesh vertices with the rasteriser's weights
    from densematch.synth.raster import rasterize

    uv1, z1 = project(transform(mesh.points.reshape(-1, 3), T), K)
    table = torch.where(mesh.renderable.reshape(-1, 1), torch.cat((uv1, z1[:, None]), 1), float("nan"))
    fragments = rasterize(grid_triangles(table.reshape(SIZE, SIZE, 3)), SIZE, SIZE)
    surface0 = fragments.interpolate(mesh.points.reshape(-1, 3), mesh.faces)
    good = ~novel.hole
    assert good.float().mean() > 0.2
    reprojected, z = project(transform(surface0[good], T), K)
    v, u = torch.nonzero(good, as_tuple=True)
    assert torch.allclose(reprojected, torch.stack((u, v), 1).float(), atol=2e-3)
    assert torch.allclose(z, novel.depth[good], rtol=1e-4)
    source_uv, _ = project(surface0[good], K)
    assert torch.allclose(source_uv, novel.source_uv[good], atol=2e-3)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_forward_ground_truth_is_exact(seed):
    """For valid0 pixels: depth1 and colour of image1 at warp_from_depth's position match the source."""
    depth, T = scene(seed)
    _, novel, valid0, uv1, image = render(depth, T)
    assert valid0.float().mean() > 0.05
    uv_ref, in_view = warp_from_depth(depth, K, K, T, size1=(SIZE, SIZE))
    assert torch.equal(uv1, uv_ref)  # the same warp as the benchmark computes
    assert not (valid0 & ~in_view).any()
    z1 = transform(unproject(pixel_grid(SIZE, SIZE).reshape(-1, 2), depth.reshape(-1), K), T)[:, 2]
    z1 = z1.reshape(SIZE, SIZE)
    relative = ((sample_map(novel.depth, uv1) - z1).abs() / z1)[valid0]
    assert relative.median() < 1e-4  # bilinear lookup of a piecewise-planar depth: exact up to curvature
    assert relative.max() <= 0.0101  # never more than the occlusion tolerance
    colour = sample_image(novel.image, uv1)
    error = (colour - image).abs().amax(0)[valid0]
    assert error.max() < 0.02  # bilinear resampling of a smooth texture
    # the inverse map, looked up at uv1, returns the source pixel
    grid = pixel_grid(SIZE, SIZE)
    back = torch.stack([sample_map(novel.source_uv[..., i], uv1) for i in range(2)], dim=-1)
    distance = (back - grid)[valid0].norm(dim=-1)
    assert distance.median() < 0.01 and distance.max() < 0.1


def test_pure_rotation_matches_the_homography():
    """Rotation only: image1 = image0 warped by K R K^-1, independent of depth."""
    depth, _ = scene(4)
    angle = math.radians(4)
    R = torch.tensor(
        [[math.cos(angle), 0.0, math.sin(angle)], [0.0, 1.0, 0.0], [-math.sin(angle), 0.0, math.cos(angle)]]
    )
    T = torch.eye(4)
    T[:3, :3] = R
    _, novel, valid0, uv1, _ = render(depth, T)
    H = K @ R @ torch.linalg.inv(K)
    grid = pixel_grid(SIZE, SIZE).reshape(-1, 2)
    mapped = torch.cat((grid, torch.ones(len(grid), 1)), 1) @ H.T
    expected = (mapped[:, :2] / mapped[:, 2:]).reshape(SIZE, SIZE, 2)
    assert torch.allclose(uv1[valid0], expected[valid0], atol=1e-3)
    assert valid0.float().mean() > 0.5


def test_depth_step_makes_holes_not_ground_truth():
    depth = torch.full((SIZE, SIZE), 4.0)
    depth[:, : SIZE // 2] = 1.0  # a foreground slab on the left
    T = torch.eye(4)
    T[0, 3] = -0.3  # the scene moves left: the background behind the slab's right edge is revealed
    mesh, novel, valid0, uv1, _ = render(depth, T)
    assert mesh.face_stretched.any()
    stretched = mesh.face_stretched.reshape(2, SIZE - 1, SIZE - 1).any(0)
    assert stretched[:, SIZE // 2 - 1].all() and not stretched[:, : SIZE // 2 - 2].any()
    assert novel.hole.any()
    assert (novel.depth[novel.hole] == 0).all()
    # the revealed band is a hole: its width is the parallax difference f * t * (1/z_near - 1/z_far)
    band = 60.0 * 0.3 * (1 / 1.0 - 1 / 4.0)
    row = novel.hole[SIZE // 2, 10 : SIZE - 10]
    assert abs(int(row.sum()) - band) <= 3
    assert valid0[:, 25 : SIZE // 2 - 5].float().mean() > 0.9  # the left 18 columns leave the view


def test_occluded_pixels_are_not_valid():
    depth = torch.full((SIZE, SIZE), 4.0)
    depth[:, : SIZE // 2] = 1.0
    T = torch.eye(4)
    T[0, 3] = 0.3  # the slab moves right, over the background next to it
    _, novel, valid0, uv1, _ = render(depth, T)
    z1 = depth + 0.0  # pure x-translation: depth in camera 1 equals depth in camera 0
    looked_up = sample_map(novel.depth, uv1)
    occluded = (looked_up - z1).abs() > 0.1 * z1
    background_covered = occluded & (depth > 2)
    assert background_covered.sum() > SIZE  # some background is hidden behind the slab
    assert not (valid0 & background_covered).any()


def test_unknown_depth_is_never_rendered_or_valid():
    depth, T = scene(5)
    depth[20:40, 30:60] = 0.0
    depth[50:55, 10:20] = float("nan")
    mesh, novel, valid0, uv1, _ = render(depth, T)
    assert not valid0[20:40, 30:60].any() and not valid0[50:55, 10:20].any()
    assert not mesh.renderable[20:40, 30:60].any()


def test_backdrop_is_rendered_without_depth():
    depth, _ = scene(6)
    sky = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    sky[:20] = True
    depth[sky] = 0
    backdrop = torch.where(sky, 100.0, 0.0)
    mesh = lift_depth(depth, K, backdrop_depth=backdrop)
    novel = render_novel_view(mesh, smooth_texture(SIZE), K, K, torch.eye(4))
    assert novel.backdrop[:18].all()
    assert (novel.depth[:18] == 0).all()
    assert not novel.hole[:18].any()
