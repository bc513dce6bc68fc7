"""Geometry: robust estimators on synthetic scenes, error functions on hand-computed cases."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from densematch.errors import InputShapeError
from densematch.geometry import (
    ESTIMATORS,
    RansacConfig,
    apply_homography,
    epipolar_precision,
    essential_from_pose,
    estimate_fundamental,
    estimate_homography,
    estimate_relative_pose,
    fundamental_from_pose,
    homography_corner_error,
    homography_from_plane,
    normalize_points,
    relative_pose_error,
    rescale_intrinsics,
    rescale_pixels,
    rotation_error_deg,
    sampson_distance,
    symmetric_epipolar_distance,
    translation_error_deg,
    warp_from_depth,
)

K0 = np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 1]])
K1 = np.array([[600.0, 0, 300], [0, 590, 250], [0, 0, 1]])


def pose(rvec, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64))[0]
    T[:3, 3] = t
    return T


def project(points, K):
    uv = points @ K.T
    return uv[:, :2] / uv[:, 2:]


def scene(T, n=300, outliers=60, seed=0):
    """Random 3D points in front of camera 0, their OpenCV pixels in both images, some outliers."""
    rng = np.random.default_rng(seed)
    X0 = rng.uniform(-1, 1, (n, 3)) + [0, 0, 5]
    uv0 = project(X0, K0)
    uv1 = project(X0 @ T[:3, :3].T + T[:3, 3], K1)
    uv1[:outliers] = rng.uniform(0, 600, (outliers, 2))
    return uv0, uv1


@pytest.mark.parametrize("method", ESTIMATORS)
def test_relative_pose_recovers_T_0to1(method):
    T = pose([0.1, 0.2, 0.05], [1.0, 0.1, 0.2])
    uv0, uv1 = scene(T)
    estimate = estimate_relative_pose(uv0, uv1, K0, K1, RansacConfig(method=method))
    assert estimate is not None
    err_R, err_t = relative_pose_error(estimate.R, estimate.t, T)
    assert err_R < 0.01 and err_t < 0.01
    assert np.isclose(np.linalg.norm(estimate.t), 1.0)
    assert estimate.num_inliers == 240  # exactly the 240 non-outliers
    assert not estimate.inliers[:60].any()
    # the inverse transform is far away: the estimate has the T_0to1 direction, not T_1to0
    assert relative_pose_error(estimate.R, estimate.t, np.linalg.inv(T))[0] > 20


def test_relative_pose_too_few_matches_and_bad_input():
    T = pose([0, 0.1, 0], [1, 0, 0])
    uv0, uv1 = scene(T, n=4, outliers=0)
    assert estimate_relative_pose(uv0, uv1, K0, K1) is None
    with pytest.raises(InputShapeError):
        estimate_relative_pose(uv0, uv1[:3], K0, K1)
    with pytest.raises(InputShapeError):
        estimate_relative_pose(uv0, uv1, np.eye(2), K1)
    with pytest.raises(ValueError, match="unknown estimator"):
        RansacConfig(method="magic")


def test_rotation_and_translation_errors_hand_computed():
    Rz30 = cv2.Rodrigues(np.array([0, 0, np.radians(30)]))[0]
    assert rotation_error_deg(Rz30, np.eye(3)) == pytest.approx(30)
    assert rotation_error_deg(np.eye(3), np.eye(3)) == pytest.approx(0, abs=1e-6)
    assert translation_error_deg([1, 0, 0], [0, 1, 0]) == pytest.approx(90)
    assert translation_error_deg([1, 1, 0], [3, 0, 0]) == pytest.approx(45)
    assert translation_error_deg([1, 0, 0], [-2, 0, 0]) == pytest.approx(0)  # sign ambiguity of E
    assert translation_error_deg([1, 0.2, 0], [-1, 0, 0]) == pytest.approx(np.degrees(np.arctan(0.2)))
    T = pose([0, 0, np.radians(10)], [0, 0, 1])
    assert relative_pose_error(np.eye(3), [0, 1, 1], T) == pytest.approx((10, 45))


def test_rescaling_keeps_the_projection():
    """Projecting with the rescaled K equals rescaling the projected pixels (OpenCV pixel centres)."""
    X = np.array([[0.3, -0.2, 4.0], [-1.0, 0.5, 6.0]])
    for s in (0.5, 1.7):
        assert np.allclose(project(X, rescale_intrinsics(K0, s)), rescale_pixels(project(X, K0), s))
    assert np.allclose(rescale_pixels([[0, 0]], 2.0), [[0.5, 0.5]])  # pixel 0 covers 2 new pixels 0 and 1
    assert np.allclose(normalize_points(project(X, K0), K0), X[:, :2] / X[:, 2:])


def test_epipolar_distances_hand_computed():
    """Rectified stereo: F = [t]_x with t = x, epipolar lines are the rows."""
    F = fundamental_from_pose(np.eye(3), np.eye(3), pose([0, 0, 0], [1, 0, 0]))
    kpts0 = np.array([[10.0, 5.0], [20.0, 7.0], [3.0, -2.0]])
    kpts1 = np.array([[4.0, 5.0], [1.0, 4.0], [9.0, 2.0]])  # row offsets 0, 3, 4
    assert np.allclose(symmetric_epipolar_distance(kpts0, kpts1, F), [0, 3 * np.sqrt(2), 4 * np.sqrt(2)])
    assert np.allclose(sampson_distance(kpts0, kpts1, F), [0, 3 / np.sqrt(2), 4 / np.sqrt(2)])
    assert np.allclose(symmetric_epipolar_distance(kpts0, kpts1, 7 * F), [0, 3 * np.sqrt(2), 4 * np.sqrt(2)])
    assert np.allclose(essential_from_pose(pose([0, 0, 0], [1, 0, 0])), [[0, 0, 0], [0, 0, -1], [0, 1, 0]])


def test_fundamental_from_pose_satisfies_the_epipolar_constraint():
    T = pose([0.1, 0.2, 0.05], [1.0, 0.1, 0.2])
    uv0, uv1 = scene(T, outliers=0)
    F = fundamental_from_pose(K0, K1, T)
    assert symmetric_epipolar_distance(uv0, uv1, F).max() < 1e-8
    assert np.isclose(np.linalg.norm(F), 1.0)


@pytest.mark.parametrize("method", ESTIMATORS)
def test_fundamental_estimation(method):
    T = pose([0.1, 0.2, 0.05], [1.0, 0.1, 0.2])
    uv0, uv1 = scene(T)
    estimate = estimate_fundamental(uv0, uv1, RansacConfig(method=method, threshold_px=0.5, max_iters=20000))
    assert estimate is not None and estimate.num_inliers >= 235
    check0, check1 = scene(T, n=50, outliers=0, seed=2)  # fresh points of the same geometry
    assert symmetric_epipolar_distance(check0, check1, estimate.F).max() < 0.1
    assert estimate_fundamental(uv0[:7], uv1[:7]) is None


def test_homography_helpers_hand_computed():
    shift = np.array([[1.0, 0, 3], [0, 1, 4], [0, 0, 1]])
    assert homography_corner_error(shift, np.eye(3), (640, 480)) == pytest.approx(5.0)
    scale = np.diag([2.0, 2.0, 1.0])  # corners (0,0), (9,0), (9,4), (0,4) move by 0, 9, sqrt(97), 4
    expected = (0 + 9 + np.sqrt(81 + 16) + 4) / 4
    assert homography_corner_error(scale, np.eye(3), (10, 5)) == pytest.approx(expected)
    assert np.allclose(apply_homography(shift, [[1, 1], [0, 0]]), [[4, 5], [3, 4]])
    assert apply_homography(np.array([[1.0, 0, 0], [0, 1, 0], [1, 0, 0]]), [[0, 0]])[0, 0] == np.inf


def test_plane_homography_matches_the_depth_warp():
    """Constant depth d is the plane z = d: warp_from_depth and homography_from_plane must agree."""
    T = pose([0.02, -0.05, 0.01], [0.3, 0.05, 0.1])
    H = homography_from_plane(K0, K1, T, [0, 0, 1], 4.0)
    depth = torch.full((48, 64), 4.0, dtype=torch.float64)
    uv1, valid = warp_from_depth(depth, torch.from_numpy(K0), torch.from_numpy(K1), torch.from_numpy(T))
    grid = np.stack(np.meshgrid(np.arange(64), np.arange(48)), axis=-1).astype(np.float64)
    expected = apply_homography(H, grid)
    assert np.allclose(uv1.numpy(), expected, atol=1e-8)
    inside = (expected >= -0.5).all(-1) & (expected[..., 0] <= 63.5) & (expected[..., 1] <= 47.5)
    assert 0 < inside.sum() < inside.size and np.array_equal(valid.numpy(), inside)


@pytest.mark.parametrize("method", ESTIMATORS)
def test_homography_estimation(method):
    T = pose([0.02, -0.05, 0.01], [0.3, 0.05, 0.1])
    H = homography_from_plane(K0, K1, T, [0.1, 0, 1], 4.0)
    rng = np.random.default_rng(0)
    uv0 = rng.uniform(0, 640, (200, 2))
    uv1 = apply_homography(H, uv0)
    uv1[:50] += rng.uniform(20, 60, (50, 2))
    estimate = estimate_homography(uv0, uv1, RansacConfig(method=method, threshold_px=3.0))
    assert estimate is not None and estimate.num_inliers == 150
    assert homography_corner_error(estimate.H, H, (640, 480)) < 0.01
    assert estimate_homography(uv0[:3], uv1[:3]) is None


def test_epipolar_precision_counts_the_matches_on_their_epipolar_lines():
    T = pose([0.05, -0.1, 0.02], [0.5, 0.1, 0.05])
    uv0, uv1 = scene(T, n=200, outliers=50)
    assert 150 / 200 <= epipolar_precision(uv0, uv1, K0, K1, T) <= 155 / 200  # a random outlier may fall near its line
    assert epipolar_precision(uv0[50:], uv1[50:], K0, K1, T) == 1.0
    # a 2 px shift across the epipolar line: squared normalised error ~ 2 * (2 / 550)^2 = 2.6e-5 < 5e-4,
    # 40 px: ~ 1e-2 > 5e-4
    normal = np.array([[0.0, 1.0]])
    assert epipolar_precision(uv0[50:], uv1[50:] + 2 * normal, K0, K1, T) > 0.9
    assert epipolar_precision(uv0[50:], uv1[50:] + 40 * normal, K0, K1, T) < 0.1
    assert epipolar_precision(np.zeros((0, 2)), np.zeros((0, 2)), K0, K1, T) == 0.0
