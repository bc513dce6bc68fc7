"""DLT triangulation (exactness, weights, gradients) and the berHu loss."""

from __future__ import annotations

import torch
from semidense_scene import rotation, shares_equal_whole

from densematch.geometry.triangulation import (
    berhu,
    berhu_loss,
    projection_matrices,
    triangulate_dlt,
    triangulated_depth,
)


def _scene(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.stack((torch.rand(n, generator=g) * 4 - 2, torch.rand(n, generator=g) * 3 - 1.5,
                     torch.rand(n, generator=g) * 6 + 4), 1).double()
    K = torch.tensor([[300.0, 0, 160], [0, 310, 120], [0, 0, 1]], dtype=torch.float64)
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3], T[:3, 3] = rotation(0.05, -0.1, 0.02), torch.tensor([0.8, -0.1, 0.2], dtype=torch.float64)
    x0 = X @ K.T
    X1 = X @ T[:3, :3].T + T[:3, 3]
    x1 = X1 @ K.T
    return X, K, T, x0[:, :2] / x0[:, 2:], x1[:, :2] / x1[:, 2:]


def test_dlt_recovers_exact_points_and_depth():
    X, K, T, kpts0, kpts1 = _scene()
    n = len(X)
    P = projection_matrices(K, K, T)
    assert torch.allclose(triangulate_dlt(P, torch.stack((kpts0, kpts1), 1)), X, rtol=1e-8, atol=1e-8)
    depth = triangulated_depth(kpts0, kpts1, K.expand(n, 3, 3), K.expand(n, 3, 3), T.expand(n, 4, 4),
                               torch.rand(n, dtype=torch.float64) + 0.5)
    assert torch.allclose(depth, X[:, 2], rtol=1e-8)  # exact data: the weights do not matter


def test_weights_decide_noisy_views():
    X, K, T, kpts0, kpts1 = _scene(seed=1)
    noisy1 = kpts1 + torch.tensor([6.0, -4.0], dtype=torch.float64)
    P = projection_matrices(K, K, T)
    points = torch.stack((kpts0, noisy1), 1)
    equal = triangulate_dlt(P, points, torch.tensor([1.0, 1.0], dtype=torch.float64).expand(len(X), 2))
    assert torch.allclose(equal, triangulate_dlt(P, points))  # unit weights = no weights
    scaled = triangulate_dlt(P, points, torch.tensor([3.0, 3.0], dtype=torch.float64).expand(len(X), 2))
    assert torch.allclose(scaled, equal)  # a common scale of all rows does not change the solution
    trust0 = triangulate_dlt(P, points, torch.tensor([1.0, 0.05], dtype=torch.float64).expand(len(X), 2))
    reproj = trust0 @ K.T
    err_trust0 = (reproj[:, :2] / reproj[:, 2:] - kpts0).norm(dim=1)
    reproj = equal @ K.T
    err_equal = (reproj[:, :2] / reproj[:, 2:] - kpts0).norm(dim=1)
    assert err_trust0.mean() < 0.2 * err_equal.mean()  # image 0 trusted: its observations are kept


def test_triangulated_depth_is_differentiable_and_clamped():
    X, K, T, kpts0, kpts1 = _scene(n=6, seed=2)
    n = len(X)
    kpts1 = kpts1.clone().requires_grad_()
    conf = torch.full((n,), 0.7, dtype=torch.float64, requires_grad=True)
    Ks, Ts = K.expand(n, 3, 3), T.expand(n, 4, 4)
    noisy0 = kpts0 + 0.5

    def depth(k1, c):
        return triangulated_depth(noisy0, k1, Ks, Ks, Ts, c)

    assert torch.autograd.gradcheck(depth, (kpts1, conf))
    assert (triangulated_depth(kpts0, kpts1, Ks, Ks, Ts, max_depth=7.0)[X[:, 2] >= 7.0] == 0).all()
    assert (triangulated_depth(kpts0, kpts1, Ks, Ks, Ts, min_depth=7.0)[X[:, 2] <= 7.0] == 0).all()
    none = triangulated_depth(kpts0[:0], kpts1[:0], Ks[:0], Ks[:0], Ts[:0], conf[:0])  # no matches
    assert none.shape == (0,)


def test_berhu_values():
    diff = torch.tensor([0.1, -1.0, 5.0])
    threshold = 0.2 * 5.0  # c = 0.2 max |d| = 1
    assert torch.allclose(berhu(diff, threshold), torch.tensor([0.1, 1.0, 13.0]))  # |d| < c, else (d^2+c^2)/2c
    assert torch.allclose(berhu_loss(diff), torch.tensor((0.1 + 1.0 + 13.0) / 3))
    mask = torch.tensor([True, True, False])  # c from the masked-in values only: 0.2
    assert torch.allclose(berhu_loss(diff, mask), torch.tensor((0.1 + (1 + 0.04) / 0.4) / 2))
    empty = berhu_loss(torch.zeros(0))
    assert empty == 0


def test_berhu_ddp_shares_with_a_max_reducer():
    diff = torch.tensor([0.3, -2.0, 0.05, 4.0, -0.7], requires_grad=True)
    mask = torch.tensor([True, True, False, True, True])
    peak = diff.detach()[mask].abs().max()

    def loss_of(x, reduce):
        max_reducer = None if reduce is None else (lambda value: torch.maximum(value, peak))
        return berhu_loss(x[0], x[1], count_reducer=reduce, max_reducer=max_reducer)

    shares_equal_whole(loss_of, (diff, mask), [(diff[:2], mask[:2]), (diff[2:], mask[2:])], [diff])
