"""Parts of the data engine: cameras, depth sources, the procedural prior, relighting, inpainting, sky."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
import torch

from densematch.errors import ImageReadError, InputShapeError, MissingDependencyError
from densematch.synth.camera import CropResize, PoseRanges, axis_angle_to_matrix, sample_relative_pose
from densematch.synth.depth import FolderDepth, read_depth_file, values_to_depth
from densematch.synth.inpaint import TeleaInpainter
from densematch.synth.popup import PopupDepthConfig, popup_depth, segment_image
from densematch.synth.prior import procedural_depth
from densematch.synth.relight import (
    Light,
    Lighting,
    RelightConfig,
    normals_from_depth,
    relight,
    sample_lighting,
)
from densematch.synth.sky import skyseg_input, skyseg_mask


def test_crop_resize_intrinsics_follow_the_pixels():
    crop = CropResize.square(400, 300, 128)
    assert crop.resized_size == (171, 128) and crop.left == 21 and crop.top == 0
    K = np.array([[350.0, 0, 210.0], [0, 340.0, 140.0], [0, 0, 1]])
    point = np.array([0.3, -0.2, 2.0])
    u, v, w = K @ point
    new_u, new_v, new_w = crop.intrinsics(K) @ point
    sx, sy = crop.scale
    assert np.isclose(new_u / new_w, (u / w + 0.5) * sx - 0.5 - crop.left)
    assert np.isclose(new_v / new_w, (v / w + 0.5) * sy - 0.5 - crop.top)
    with pytest.raises(InputShapeError):
        crop.values(np.ones((10, 10), np.float32))


def test_crop_resize_never_mixes_unknown_depth():
    depth = np.full((300, 400), 2.0, np.float32)
    depth[100:200, 100:200] = 0
    depth[50, 50] = np.nan
    out = CropResize.square(400, 300, 150).values(depth)
    assert out.shape == (150, 150)
    assert set(np.unique(out[out > 0]).round(5)) == {2.0}  # known values are never averaged with zeros
    assert (out == 0).sum() >= 50 * 50 * 0.9


def test_poses_stay_in_the_published_ranges():
    rng = np.random.default_rng(0)
    ranges = PoseRanges()
    for _ in range(50):
        T = sample_relative_pose(rng, ranges, scale=2.0)
        R = T[:3, :3]
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(R), 1)
        t = np.abs(T[:3, 3]) / 2.0
        assert 0.2 <= t[0] <= 0.4 and 0.2 <= t[1] <= 0.4 and 0.4 <= t[2] <= 0.8
        rotvec = cv2.Rodrigues(R)[0].ravel()
        assert np.all((np.abs(np.degrees(rotvec)) >= 5 - 1e-6) & (np.abs(np.degrees(rotvec)) <= 10 + 1e-6))
    fixed = sample_relative_pose(rng, PoseRanges((0, 0), (0, 0), (0, 0), (0, 0)))
    assert np.allclose(fixed, np.eye(4))
    vector = np.array([0.1, -0.3, 0.2])
    assert np.allclose(axis_angle_to_matrix(vector), cv2.Rodrigues(vector)[0])


def test_disparity_to_depth_like_l2m():
    disparity = np.array([[0.0, 2.0], [6.0, np.nan]], np.float32)
    depth = values_to_depth(disparity, "disparity", disparity_floor=0.01)
    assert depth[0, 0] == 0 and depth[1, 1] == 0  # unknown stays unknown
    assert np.isclose(depth[0, 1], 1 / 0.01) and np.isclose(depth[1, 0], 1 / 1.01)
    assert np.array_equal(values_to_depth(np.array([[1.5, -1]]), "depth"), np.array([[1.5, 0]], np.float32))


def test_depth_files(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((4, 5, 1), np.float32))
    assert read_depth_file(tmp_path / "a.npy").shape == (4, 5)
    cv2.imwrite(str(tmp_path / "b.png"), np.full((4, 5), 40000, np.uint16))
    assert read_depth_file(tmp_path / "b.png").max() == 40000
    (tmp_path / "c.npy").write_bytes(b"junk")
    with pytest.raises(ImageReadError):
        read_depth_file(tmp_path / "c.npy")
    np.save(tmp_path / "d.npy", np.ones((4, 5, 3), np.float32))
    with pytest.raises(InputShapeError):
        read_depth_file(tmp_path / "d.npy")
    with pytest.raises(ImageReadError, match="no depth map for image 'zzz'"):
        FolderDepth(tmp_path).path_for("zzz")


def test_procedural_depth_is_piecewise_planar():
    depth = procedural_depth(120, 160, np.random.default_rng(1))
    assert depth.shape == (120, 160) and np.isclose(depth.min(), 1.0) and np.isfinite(depth).all()
    inverse = 1.0 / depth.astype(np.float64)
    # inverse depth of a plane is affine in pixels: second differences vanish except at creases/edges
    second = np.abs(inverse[:, 2:] - 2 * inverse[:, 1:-1] + inverse[:, :-2])
    assert np.mean(second < 1e-6) > 0.9
    assert np.mean(second > 1e-3) > 0.001  # and there are occlusion edges
    again = procedural_depth(120, 160, np.random.default_rng(1))
    assert np.array_equal(depth, again)


def _textured_scene(height=96, width=128, sky=True, seed=0):
    """A bright smooth sky over a textured lower part with a few coloured blocks."""
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 200, size=(height, width, 3)).astype(np.uint8)
    image = cv2.GaussianBlur(image, (3, 3), 0)
    image[60:, 20:50] = (200, 40, 40)
    image[45:80, 80:110] = (30, 160, 60)
    if sky:
        image[: height // 3] = (170, 200, 240)
    return image


def test_popup_depth_discontinuities_lie_on_segment_boundaries():
    image = _textured_scene()
    config = PopupDepthConfig()
    depth = popup_depth(image, np.random.default_rng(3), config)
    labels = segment_image(image, np.random.default_rng(3), config)  # the same first draws
    assert depth.shape == image.shape[:2] and np.isfinite(depth).all() and np.isclose(depth.min(), 1.0)
    inverse = 1.0 / depth.astype(np.float64)
    for axis in (0, 1):
        a, b = np.moveaxis(inverse, axis, 0), np.moveaxis(labels, axis, 0)
        # every segment is a plane: inverse depth affine in pixels, second differences vanish inside it
        kink = np.abs(a[2:] - 2 * a[1:-1] + a[:-2]) > 1e-4 * a.max()
        inside = (b[2:] == b[1:-1]) & (b[1:-1] == b[:-2])
        assert kink[~inside].mean() > 0.05  # the depth edges are at the segment boundaries ...
        assert kink[inside].mean() < 0.02  # ... and not inside (bar the ground's kink at the horizon)
    assert np.array_equal(depth, popup_depth(image, np.random.default_rng(3), config))


def test_popup_depth_sky_far_ground_near_at_the_bottom():
    image = _textured_scene(sky=True)
    for seed in range(3):
        depth = popup_depth(image, np.random.default_rng(seed))
        sky, rest = depth[:20], depth[40:]
        assert sky.min() > 10 * rest.max()  # the sky is far beyond every surface
        rows = np.median(depth[40:], axis=1)
        assert rows[-1] < rows[0]  # the ground comes nearer towards the bottom of the image
    no_sky = popup_depth(_textured_scene(sky=False), np.random.default_rng(0))
    assert no_sky.max() < 1000  # without a sky nothing is sent to the sky distance


def test_normals_of_a_plane():
    K = torch.tensor([[50.0, 0, 31.5], [0, 50.0, 31.5], [0, 0, 1]])
    v, u = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    normal = torch.tensor([0.3, -0.2, -1.0])
    normal = normal / normal.norm()
    # plane n . X = -2: depth along the ray K^-1 [u, v, 1]
    rays = torch.stack(((u - 31.5) / 50, (v - 31.5) / 50, torch.ones_like(u)), dim=-1)
    depth = -2.0 / (rays @ normal)
    normals = normals_from_depth(depth, K)
    assert torch.allclose(normals[1:-1, 1:-1], normal.expand(62, 62, 3), atol=1e-4)
    assert torch.allclose(
        normals[0, 0], torch.tensor([0.0, 0.0, -1.0])
    )  # no central difference: facing camera


def test_relighting_follows_the_light_and_keeps_the_range():
    K = torch.tensor([[50.0, 0, 31.5], [0, 50.0, 31.5], [0, 0, 1]])
    depth = torch.full((64, 64), 2.0)
    image = torch.full((3, 64, 64), 0.5)
    left = Lighting(
        (0.1, 0.1, 0.1), (Light((1.0, 1.0, 1.0), 1.0, position=(-3.0, 0.0, 1.0)),), brightness=1.0
    )
    lit = relight(image, depth, K, left)
    assert lit.shape == image.shape and 0 <= lit.min() and lit.max() <= 1
    assert lit[:, :, :10].mean() > lit[:, :, -10:].mean()  # brighter on the side of the light
    red = Lighting(
        (0.0, 0.0, 0.0), (Light((1.0, 0.2, 0.2), 1.0, direction=(0.0, 0.0, -1.0)),), brightness=1.0
    )
    tinted = relight(image, depth, K, red)
    assert tinted[0].mean() > tinted[1].mean()
    rng = np.random.default_rng(0)
    lighting = sample_lighting(rng, RelightConfig(), 2.0)
    assert 2 <= len(lighting.lights) <= 5 and "lights" in lighting.describe()


def test_telea_only_changes_holes():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    hole = np.zeros((64, 80), bool)
    hole[20:40, 30:60] = True
    image[hole] = 0
    filled = TeleaInpainter()(image, hole)
    assert np.array_equal(filled[~hole], image[~hole])
    assert filled[hole].mean() > 50  # filled from the surroundings, not left black
    with pytest.raises(InputShapeError):
        TeleaInpainter()(image, hole[:10])


def test_sky_preprocessing_and_mask():
    image = np.zeros((700, 1400, 3), np.uint8)
    image[:, :, 2] = 255
    x = skyseg_input(image)
    assert x.shape == (1, 3, 320, 320) and x.dtype == np.float32
    assert np.isclose(x[0, 2].mean(), (1 - 0.406) / 0.225, atol=1e-4)  # blue channel, ImageNet statistics
    scores = np.zeros((320, 320), np.float32)
    scores[:100] = 5.0
    mask = skyseg_mask(scores[None, None], 64, 64)
    assert mask[:15].all() and not mask[25:].any()


@pytest.mark.parametrize("module", ["onnxruntime", "transformers"])
def test_optional_models_report_missing_dependencies(monkeypatch, module):
    from densematch.synth.depth import MonocularDepth
    from densematch.synth.sky import SkySegmenter

    factory = {"onnxruntime": lambda: SkySegmenter("x.onnx"), "transformers": lambda: MonocularDepth("nowhere")}
    monkeypatch.setitem(sys.modules, module, None)  # `import module` fails whether it is installed or not
    with pytest.raises(MissingDependencyError, match=module):
        factory[module]()
