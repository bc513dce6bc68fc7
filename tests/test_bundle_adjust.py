"""Two-view bundle adjustment: se(3) exponential, the LM step against a dense solve, pose refinement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densematch.geometry.bundle_adjust import (
    _damped_step,
    _normal_equations,
    hat,
    refine_pose_ba,
    se3_exp,
)
from densematch.geometry.pose import rotation_error_deg, translation_error_deg
from densematch.geometry.triangulation import triangulate_dlt

K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])


def _twist_matrix(xi: torch.Tensor) -> torch.Tensor:
    M = torch.zeros(*xi.shape[:-1], 4, 4, dtype=xi.dtype)
    M[..., :3, :3] = hat(xi[..., 3:])
    M[..., :3, 3] = xi[..., :3]
    return M


@pytest.mark.parametrize("scale", [1.0, 1e-5, 0.0])
def test_se3_exp_is_the_matrix_exponential(scale):
    xi = torch.randn(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * scale
    T = se3_exp(xi)
    assert torch.allclose(T, torch.linalg.matrix_exp(_twist_matrix(xi)), atol=1e-12)
    R = T[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(8, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(8, dtype=torch.float64))


def _scene(n=300, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    X = np.c_[rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(4, 8, n)]
    T = se3_exp(torch.tensor([1.0, 0.1, 0.2, 0.05, 0.2, -0.03], dtype=torch.float64)).numpy()

    def project(P):
        p = P @ K.T
        return p[:, :2] / p[:, 2:]

    kpts0 = project(X) + rng.normal(0, noise, (n, 2))
    kpts1 = project(X @ T[:3, :3].T + T[:3, 3]) + rng.normal(0, noise, (n, 2))
    return kpts0, kpts1, T, rng


def test_ba_reduces_the_pose_error_of_a_perturbed_start():
    kpts0, kpts1, T, rng = _scene()
    delta = np.r_[rng.normal(0, 0.05, 3), rng.normal(0, 0.02, 3)]
    start = se3_exp(torch.tensor(delta)).numpy() @ T
    R0, t0 = start[:3, :3], start[:3, 3] / np.linalg.norm(start[:3, 3])
    R1, t1 = refine_pose_ba(kpts0, kpts1, K, K, R0, t0, np.ones(len(kpts0)))
    err_R0, err_t0 = rotation_error_deg(R0, T[:3, :3]), translation_error_deg(t0, T[:3, 3])
    err_R1, err_t1 = rotation_error_deg(R1, T[:3, :3]), translation_error_deg(t1, T[:3, 3])
    assert err_R0 > 0.5 and err_t0 > 1.0
    assert err_R1 < 0.3 * err_R0 and err_t1 < 0.3 * err_t0
    assert np.allclose(R1 @ R1.T, np.eye(3), atol=1e-9)


def test_zero_confidence_matches_are_ignored_and_few_matches_keep_the_pose():
    kpts0, kpts1, T, rng = _scene(n=60, seed=1)
    R0, t0 = T[:3, :3], T[:3, 3] + 0.05
    outliers0, outliers1 = rng.uniform(0, 640, (20, 2)), rng.uniform(0, 480, (20, 2))
    conf = np.r_[np.ones(60), np.zeros(20)]
    with_outliers = refine_pose_ba(np.r_[kpts0, outliers0], np.r_[kpts1, outliers1], K, K, R0, t0, conf)
    clean = refine_pose_ba(kpts0, kpts1, K, K, R0, t0)
    assert np.allclose(with_outliers[0], clean[0]) and np.allclose(with_outliers[1], clean[1])
    few = refine_pose_ba(kpts0[:6], kpts1[:6], K, K, R0, t0)
    assert np.array_equal(few[0], R0) and np.array_equal(few[1], t0)


def test_damped_step_equals_the_dense_preconditioned_solve():
    """The Schur-complement step equals upstream's dense ``(D^-1 J^T J + lambda I) x = -D^-1 J^T r``."""
    kpts0, kpts1, T, _ = _scene(n=12, seed=2)
    Kt = torch.as_tensor(K)
    obs0 = (torch.as_tensor(kpts0) - Kt[:2, 2]) / 500.0
    obs1 = (torch.as_tensor(kpts1) - Kt[:2, 2]) / 500.0
    T1 = torch.as_tensor(T) @ se3_exp(torch.tensor([0.02, 0.0, -0.01, 0.01, 0.0, 0.005], dtype=torch.float64))
    points = triangulate_dlt(torch.stack((torch.eye(3, 4, dtype=torch.float64), T1[:3])), torch.stack((obs0, obs1), 1))
    points = points + 0.01
    conf = torch.linspace(0.5, 1.5, 12, dtype=torch.float64)
    conf = conf / conf.sum()

    def residual(x):
        delta, dpts = x[:6], x[6:].reshape(-1, 3)
        Tn = (torch.eye(4, dtype=torch.float64) + _twist_matrix(delta)) @ T1  # first order in delta
        P = points + dpts
        P1 = P @ Tn[:3, :3].T + Tn[:3, 3]
        r0 = conf[:, None] * (P[:, :2] / P[:, 2:] - obs0)
        r1 = conf[:, None] * (P1[:, :2] / P1[:, 2:] - obs1)
        return torch.cat((r0.reshape(-1), r1.reshape(-1)))

    x0 = torch.zeros(6 + 36, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(residual, x0)
    r = residual(x0)
    A, b = J.T @ J, -J.T @ r
    inv_M = torch.diag(1 / torch.diagonal(A))
    expected = torch.linalg.solve(inv_M @ A + 0.1 * torch.eye(42, dtype=torch.float64), inv_M @ b)
    norm, system = _normal_equations(T1, points, obs0, obs1, conf)
    assert torch.allclose(norm, (r * r).sum())
    delta_c, delta_p = _damped_step(system, 0.1)
    assert torch.allclose(delta_c, expected[:6], rtol=1e-6, atol=1e-10)
    assert torch.allclose(delta_p.reshape(-1), expected[6:], rtol=1e-6, atol=1e-10)
