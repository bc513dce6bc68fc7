"""Real depth: the Middlebury motorcycle (scikit-image), left image + ground-truth disparity -> right view.

Depth from the calibration of the down-sampled images (scikit-image's docstring): ``Z = f B / (d + doffs)``.
The right camera is the left one moved by the baseline along x (``T_0to1 = [I | (-B, 0, 0)]``) with the
principal point shifted by ``doffs``. The rendered right view must carry exact ground truth, and it should
also resemble the real right image (a sanity check only: lighting, reflections and disparity errors differ).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densematch.geometry.warps import sample_map, warp_from_depth
from densematch.synth.engine import SourceView, SynthConfig, synthesize_pair
from densematch.synth.render import sample_image

FOCAL, CX, CY, DOFFS, BASELINE_M = 994.978, 311.193, 254.877, 31.086, 0.193001


@pytest.fixture(scope="module")
def motorcycle():
    data = pytest.importorskip("skimage.data")
    try:
        left, right, disparity = data.stereo_motorcycle()
    except Exception as exc:  # scikit-image may need to download the files (pooch), which fails offline
        pytest.skip(f"scikit-image's motorcycle data is not available: {exc}")
    depth = np.where(np.isfinite(disparity), FOCAL * BASELINE_M / (disparity + DOFFS), 0).astype(np.float32)
    K0 = np.array([[FOCAL, 0, CX], [0, FOCAL, CY], [0, 0, 1]])
    K1 = K0.copy()
    K1[0, 2] += DOFFS
    T = np.eye(4)
    T[0, 3] = -BASELINE_M
    view = SourceView("motorcycle", left, depth, K0)
    config = SynthConfig(relight=None, inpaint=False)
    pair = synthesize_pair(view, T, K1, config, relit=False)
    return left, right, disparity, pair


def test_depth_matches_the_stereo_disparity(motorcycle):
    left, right, disparity, pair = motorcycle
    uv1, _ = warp_from_depth(
        torch.from_numpy(pair.depth0),
        torch.tensor(pair.K0, dtype=torch.float32),
        torch.tensor(pair.K1, dtype=torch.float32),
        torch.tensor(pair.T_0to1, dtype=torch.float32),
    )
    known = np.isfinite(disparity)
    u0 = np.arange(left.shape[1])[None].repeat(left.shape[0], 0)
    # Middlebury: x_right = x_left - d; our warp must reproduce it (same row, shifted by the disparity)
    assert np.allclose(uv1[..., 0].numpy()[known], (u0 - disparity)[known], atol=2e-3)
    assert np.allclose(uv1[..., 1].numpy()[known], np.indices(disparity.shape)[0][known], atol=2e-3)


def test_rendered_right_view_has_exact_ground_truth(motorcycle):
    left, right, disparity, pair = motorcycle
    valid0 = torch.from_numpy(pair.valid0)
    assert valid0.float().mean() > 0.5
    uv1, _ = warp_from_depth(
        torch.from_numpy(pair.depth0),
        torch.tensor(pair.K0, dtype=torch.float32),
        torch.tensor(pair.K1, dtype=torch.float32),
        torch.tensor(pair.T_0to1, dtype=torch.float32),
    )
    depth1 = torch.from_numpy(pair.depth1)
    z1 = torch.from_numpy(pair.depth0)  # a pure x-translation keeps the depth
    relative = ((sample_map(depth1, uv1) - z1).abs() / z1)[valid0]
    assert relative.median() < 1e-4 and relative.max() <= 0.0101
    image0 = torch.from_numpy(pair.image0).permute(2, 0, 1).float()
    image1 = torch.from_numpy(pair.image1).permute(2, 0, 1).float()
    error = (sample_image(image1, uv1) - image0).abs().amax(0)[valid0]
    # pure horizontal shifts: colour at the warped position equals the source colour up to bilinear resampling
    # of a real texture (and the uint8 rounding of image1)
    assert error.median() <= 2.0
    assert (error <= 25).float().mean() > 0.98


def test_rendered_view_resembles_the_real_right_image(motorcycle):
    left, right, disparity, pair = motorcycle
    covered = ~pair.hole1
    rendered = pair.image1.astype(np.float32)
    real = right.astype(np.float32)
    rendered_error = np.abs(rendered - real).mean(-1)[covered]
    unwarped_error = np.abs(left.astype(np.float32) - real).mean(-1)[covered]
    assert np.median(rendered_error) < 0.5 * np.median(unwarped_error)
    assert np.median(rendered_error) < 12
