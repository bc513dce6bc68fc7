"""The coordinate conventions: round trips and agreement with grid_sample's align_corners=False."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from densematch.conventions import normalized_grid, normalized_to_pixel, pixel_to_normalized


def test_round_trip_numpy_and_torch():
    uv = np.random.default_rng(0).uniform(-0.5, 99.5, (100, 2))
    assert np.allclose(normalized_to_pixel(pixel_to_normalized(uv, 100, 60), 100, 60), uv)
    t = torch.from_numpy(uv)
    assert torch.allclose(pixel_to_normalized(t, 100, 60), torch.from_numpy(pixel_to_normalized(uv, 100, 60)))


def test_pixel_centres_and_edges():
    # the centre of the top-left pixel is (0, 0) in pixels and (-1 + 1/W, -1 + 1/H) normalised
    assert np.allclose(pixel_to_normalized(np.array([0.0, 0.0]), 4, 2), [-0.75, -0.5])
    assert np.allclose(normalized_to_pixel(np.array([-1.0, 1.0]), 4, 2), [-0.5, 1.5])  # outer edges


def test_grid_samples_pixels_exactly():
    image = torch.arange(12.0).reshape(1, 1, 3, 4)
    grid = normalized_grid(3, 4)
    sampled = F.grid_sample(image, grid[None], mode="bilinear", align_corners=False)
    assert torch.equal(sampled, image)
    uv = normalized_to_pixel(grid, 4, 3)
    assert torch.allclose(uv[1, 2], torch.tensor([2.0, 1.0]))
