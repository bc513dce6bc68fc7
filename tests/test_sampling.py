"""Balanced sampling: the KDE matches a direct computation, seeds reproduce, degenerate inputs work."""

from __future__ import annotations

import torch

from densematch.sampling import balanced_sample, kde_density


def test_kde_matches_direct_formula():
    x = torch.rand(700, 4)
    direct = torch.exp(-torch.cdist(x, x) ** 2 / (2 * 0.1**2)).sum(-1)
    assert torch.allclose(kde_density(x, 0.1, block=64), direct, rtol=1e-5, atol=1e-5)
    strided = torch.exp(-torch.cdist(x, x[::8]) ** 2 / (2 * 0.1**2)).sum(-1)
    assert torch.allclose(kde_density(x, 0.1, stride=8, block=100), strided, rtol=1e-5, atol=1e-5)


def test_seeded_and_balanced():
    torch.manual_seed(0)
    # 90 % of the candidates in a tight cluster, 10 % in a wider (but not isolated) region: balancing
    # must favour the wider region (isolated points, density < 10, are dropped as outliers by design)
    dense = 0.5 + 0.01 * torch.randn(9000, 4)
    sparse = -0.5 + 0.4 * torch.rand(1000, 4)
    matches = torch.cat((dense, sparse))
    cert = torch.ones(len(matches))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    m1, c1 = balanced_sample(matches, cert, 500, generator=g1)
    m2, _ = balanced_sample(matches, cert, 500, generator=g2)
    assert torch.equal(m1, m2) and m1.shape == (500, 4) and c1.shape == (500,)
    unbalanced, _ = balanced_sample(matches, cert, 500, balanced=False, generator=torch.Generator().manual_seed(3))
    frac_sparse = lambda m: (m < 0).all(-1).float().mean()
    assert frac_sparse(m1) > 2 * frac_sparse(unbalanced)


def test_threshold_and_empty_certainty():
    matches = torch.rand(50, 50, 4)
    cert = torch.zeros(50, 50)
    m, c = balanced_sample(matches, cert, 100)
    assert m.shape == (0, 4) and c.shape == (0,)
    cert[:5] = 0.2  # above the threshold: all count as 1
    m, c = balanced_sample(matches, cert, 10000, balanced=False)
    assert len(m) == 250 and torch.all(c == 1)
