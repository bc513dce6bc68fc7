"""Balanced sampling: the fast KDE matches the exact formula, the sampling distribution is the one of the
exact kernel density (chi-square over many draws), seeds reproduce, degenerate inputs work."""

from __future__ import annotations

import torch

from densematch.sampling import _multinomial, balanced_sample, kde_density


def exact_density(x: torch.Tensor, ref: torch.Tensor, std: float = 0.1) -> torch.Tensor:
    """The formula itself, in float64, every pair."""
    x, ref = x.double(), ref.double()
    return torch.exp(-(x[:, None] - ref[None]).square().sum(-1) / (2 * std**2)).sum(-1)


def warp_like_matches(n: int, seed: int = 0) -> torch.Tensor:
    """Match vectors on a 2-D manifold of [-1, 1]^4 (a homography-like warp), clustered unevenly, so
    that local densities vary by orders of magnitude and many block pairs are beyond the cut-off."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.cat((torch.rand(n // 2, 2, generator=g) * 2 - 1, 0.05 * torch.randn(n - n // 2, 2, generator=g) + 0.4))
    x1 = 0.9 * x0 + 0.1 * x0.flip(-1) ** 2 + 0.003 * torch.randn(n, 2, generator=g)
    return torch.cat((x0, x1), -1)


def test_kde_matches_exact_formula():
    x = warp_like_matches(6000)
    exact = exact_density(x, x)
    fast = kde_density(x, 0.1, block=64).double()
    assert ((fast - exact).abs() / exact).max() < 1e-4
    strided = exact_density(x, x[::8])
    assert ((kde_density(x, 0.1, stride=8, block=100).double() - strided).abs() / strided).max() < 1e-4
    assert torch.allclose(kde_density(x, 0.1, tol=None).double(), exact, rtol=1e-4)
    # a tiny input (fewer points than a block) and a far outlier (density 1: only itself)
    y = torch.cat((torch.rand(5, 4), torch.full((1, 4), 50.0)))
    assert torch.allclose(kde_density(y).double(), exact_density(y, y), rtol=1e-5)
    assert kde_density(torch.zeros(0, 4)).shape == (0,)


def test_sampling_distribution_is_the_exact_kde_one():
    """Our balanced step vs the same step driven by the float64 exact density, on the same candidates:
    the weights agree to 1e-4 in total variation, and draws fall into spatial bins with the same
    frequencies (two-sample chi-square homogeneity test, 16 bins, p > 0.001)."""
    x = warp_like_matches(4000, seed=1)
    exact = exact_density(x, x)
    p_exact = 1 / (exact + 1)
    p_exact[exact < 10] = 1e-7
    p_fast = 1 / (kde_density(x).double() + 1)
    p_fast[kde_density(x) < 10] = 1e-7
    tv = 0.5 * (p_fast / p_fast.sum() - p_exact / p_exact.sum()).abs().sum()
    assert tv < 1e-4
    bins = ((x[:, 0] + 1) * 2).clamp(0, 3.999).long() * 4 + ((x[:, 1] + 1) * 2).clamp(0, 3.999).long()
    counts = torch.zeros(2, 16, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        counts[0] += torch.bincount(bins[_multinomial(p_fast.float(), 300, g)], minlength=16)
        counts[1] += torch.bincount(bins[_multinomial(p_exact.float(), 300, g)], minlength=16)
    expected = counts.sum(0, keepdim=True) * counts.sum(1, keepdim=True) / counts.sum()
    keep = expected.min(0).values > 5
    chi2 = ((counts - expected)[:, keep].square() / expected[:, keep]).sum()
    assert chi2 < 37.7  # chi-square, 15 degrees of freedom, p = 0.001
    # the test has power: balancing by a wrong density (bandwidth 0.2) is detected
    p_wrong = 1 / (kde_density(x, std=0.2).double() + 1)
    wrong = torch.zeros(16, dtype=torch.float64)
    for _ in range(200):
        wrong += torch.bincount(bins[_multinomial(p_wrong.float(), 300, g)], minlength=16)
    both = torch.stack((wrong, counts[1]))
    expected = both.sum(0, keepdim=True) * both.sum(1, keepdim=True) / both.sum()
    assert ((both - expected)[:, keep].square() / expected[:, keep]).sum() > 37.7


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
