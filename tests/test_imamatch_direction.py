"""The key-area direction decision of IMAMatch (F-RANSAC, 10 iterations), on its own: determinism, its
meaning, and agreement with the reference's decision (the reference venv's OpenCV, upstream's formula)."""

from __future__ import annotations

import subprocess
import textwrap

import cv2
import numpy as np
import pytest
import torch

from densematch.models.imamatch.direction import decide_reverse, key_area_inliers, mean_squared_spread


def coarse_sets(count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Integer coarse-cell matches: a random zoom/shift of a patch of a 40x30 grid plus 30 % outliers."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(count):
        n = int(rng.integers(20, 300))
        c0 = rng.integers(0, [40, 30], (n, 2)).astype(np.float32)
        zoom = rng.uniform(0.4, 2.5)
        c1 = np.round(c0 * zoom + rng.uniform(-5, 5, 2) + rng.normal(0, 0.5, c0.shape)).astype(np.float32)
        outliers = rng.random(n) < 0.3
        c1[outliers] = rng.integers(0, [40, 30], (int(outliers.sum()), 2))
        sets.append((c0, c1))
    return sets


def test_decision_is_deterministic_and_independent_of_the_cv2_seed():
    for c0, c1 in coarse_sets(5):
        t0, t1 = torch.from_numpy(c0), torch.from_numpy(c1)
        first = key_area_inliers(t0, t1)
        for seed in (1, 7, 12345):
            cv2.setRNGSeed(seed)
            _, mask = cv2.findFundamentalMat(c0, c1, method=cv2.RANSAC, ransacReprojThreshold=3, confidence=0.9999,
                                             maxIters=10)
            assert torch.equal(torch.from_numpy(mask.reshape(-1) > 0), first)
            assert torch.equal(key_area_inliers(t0, t1), first)


def test_the_more_spread_image_becomes_the_query():
    rng = np.random.default_rng(1)
    c0 = torch.from_numpy(rng.integers(0, 20, (200, 2)).astype(np.float32))
    c1 = c0 * 2 + 3  # image 1 sees the same area twice as large
    assert decide_reverse(c0, c1) is True
    assert decide_reverse(c1, c0) is False
    assert decide_reverse(c0[:6], c1[:6]) is None  # too few matches for RANSAC: upstream returns no matches


def test_closed_form_spread_equals_the_pairwise_mean():
    points = torch.randn(50, 2) * 10
    pairwise = (points[:, None] - points[None]).pow(2).sum(-1).double().mean()
    assert torch.allclose(mean_squared_spread(points), pairwise, rtol=1e-6)


UPSTREAM_DECISION = textwrap.dedent("""
    import sys, cv2, numpy as np, torch
    data = np.load(sys.argv[1])
    out = []
    for i in range(int(data["count"])):
        coords0, coords1 = torch.from_numpy(data[f"c0_{i}"]), torch.from_numpy(data[f"c1_{i}"])
        # upstream forward_test, models/model.py lines 261-270
        _, FM = cv2.findFundamentalMat(coords0.cpu().numpy(), coords1.cpu().numpy(),
            method=cv2.RANSAC, ransacReprojThreshold=3, confidence=0.9999, maxIters=10)
        FM = FM.squeeze().astype(bool)
        c0, c1 = coords0[FM], coords1[FM]
        d0 = (torch.pow(c0[:, None, :] - c0[None, :, :], 2).sum(-1)).mean()
        d1 = (torch.pow(c1[:, None, :] - c1[None, :, :], 2).sum(-1)).mean()
        out.append((bool(d0 < d1), FM))
    np.savez(sys.argv[2], reverse=np.array([r for r, _ in out]), **{f"inliers_{i}": m for i, (_, m) in enumerate(out)})
    print(cv2.__version__)
""")


@pytest.mark.oracle
def test_decision_agrees_with_the_reference(semidense_python, tmp_path):
    sets = coarse_sets(40, seed=2)
    arrays = {"count": np.array(len(sets))}
    for i, (c0, c1) in enumerate(sets):
        arrays[f"c0_{i}"], arrays[f"c1_{i}"] = c0, c1
    np.savez(tmp_path / "sets.npz", **arrays)
    (tmp_path / "decide.py").write_text(UPSTREAM_DECISION)
    done = subprocess.run([semidense_python, str(tmp_path / "decide.py"), str(tmp_path / "sets.npz"),
                           str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ref = np.load(tmp_path / "out.npz")
    ours = [decide_reverse(torch.from_numpy(c0), torch.from_numpy(c1)) for c0, c1 in sets]
    assert ours == ref["reverse"].tolist()
    assert 5 < sum(ours) < len(ours) - 5  # both directions occur
    for i, (c0, c1) in enumerate(sets):
        assert np.array_equal(key_area_inliers(torch.from_numpy(c0), torch.from_numpy(c1)).numpy(), ref[f"inliers_{i}"])
