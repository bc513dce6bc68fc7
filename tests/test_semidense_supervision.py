"""Semi-dense ground truth on scenes with known geometry (a plane seen by two cameras, homographies)."""

from __future__ import annotations

import pytest
import torch
from semidense_scene import homography_pair, plane_pair, rotation, without

from densematch.errors import InputShapeError
from densematch.models.semidense.fine_targets import warp_matches
from densematch.models.semidense.supervision import (
    CoarseSupervision,
    cell_points,
    coarse_targets,
    fine_offset_targets,
    geometry_source,
    keypoint_targets,
    warp_points,
)

GRID = (8, 10)  # 64 x 80 images at 1/8


def _pairs(spv):
    return set(zip(spv["spv_b_ids"].tolist(), spv["spv_i_ids"].tolist(), spv["spv_j_ids"].tolist(), strict=True))


def _shift_pairs(dx_cells: int, h=GRID[0], w=GRID[1], batch=1):
    return {(b, y * w + x, y * w + x + dx_cells) for b in range(batch) for y in range(h) for x in range(w)
            if 0 <= x + dx_cells < w}


def test_identity_pose_matches_every_cell_to_itself():
    spv = coarse_targets(plane_pair(), GRID, GRID)
    assert torch.equal(spv["conf_matrix_gt"][0], torch.eye(80))
    assert len(spv["spv_b_ids"]) == 80  # the top-left cell is supervised too (explicit validity)


@pytest.mark.parametrize("cell_offset", [3.5, 0.0])
def test_eight_pixel_translation_shifts_by_one_cell(cell_offset):
    batch = plane_pair(t=(0.8, 0.0, 0.0), batch=2)  # focal 100, depth 10: 8 px to the right
    spv = coarse_targets(batch, GRID, GRID, CoarseSupervision(cell_offset=cell_offset))
    assert _pairs(spv) == _shift_pairs(1, batch=2)
    w = spv["spv_w_pt0_i"][0, 0]
    assert torch.allclose(w, torch.tensor([8 + cell_offset, cell_offset]), atol=1e-3)


def test_homography_and_warp_only_batches_agree_with_depth():
    H = torch.tensor([[1.0, 0, 8], [0, 1, 0], [0, 0, 1]])
    expected = _shift_pairs(1)
    assert _pairs(coarse_targets(homography_pair(H), GRID, GRID)) == expected
    assert _pairs(coarse_targets(without(homography_pair(H), "H_0to1"), GRID, GRID)) == expected


def test_general_pose_depth_equals_homography_and_pairs_are_mutual_nearest_cells():
    R = rotation(0.04, -0.06, 0.05)
    t = (0.5, -0.2, 0.3)
    depth_batch = plane_pair(R=R, t=t)  # fronto-parallel plane in camera 0: the induced homography is exact
    K = depth_batch["K0"][0].double()
    n = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    H = K @ (R + torch.tensor(t, dtype=torch.float64)[:, None] @ n[None] / 10.0) @ torch.linalg.inv(K)
    spv = coarse_targets(depth_batch, GRID, GRID)
    assert _pairs(spv) == _pairs(coarse_targets(homography_pair(H), GRID, GRID))
    assert len(spv["spv_b_ids"]) > 30
    gt = spv["conf_matrix_gt"]
    assert gt.sum(1).max() <= 1 and gt.sum(2).max() <= 1
    config = CoarseSupervision()
    centres1 = cell_points(1, GRID, config, "cpu")[0]
    w = spv["spv_w_pt0_i"][0, spv["spv_i_ids"]]
    assert ((w - centres1[spv["spv_j_ids"]]).abs() <= 4.0 + 1e-3).all()
    back, _ = warp_points(centres1[None], depth_batch, reverse=True)
    centres0 = cell_points(1, GRID, config, "cpu")[0]
    assert ((back[0, spv["spv_j_ids"]] - centres0[spv["spv_i_ids"]]).abs() <= 4.0 + 1e-3).all()


def test_depth_consistency_and_unknown_depth_remove_cells():
    batch = plane_pair()
    batch["depth1"][:, :, 40:] *= 0.5  # occluder in front of the right half of image 1
    batch["depth0"][:, 3, 3] = 0.0  # unknown depth around cell 0's sample point (3.5, 3.5)
    batch["depth0"][:, 4, 4] = 0.0
    spv = coarse_targets(batch, GRID, GRID)
    matched = set(spv["spv_i_ids"].tolist())
    assert 0 not in matched
    assert all(i % 10 < 5 for i in matched)  # cells 5..9 of each row sample pixels x >= 43.5
    assert len(matched) == 5 * 8 - 1
    loose = coarse_targets(batch, GRID, GRID, CoarseSupervision(rel_depth_tol=None))
    assert len(loose["spv_i_ids"]) == 79


def test_keypoint_targets_pair_nearest_keypoints_within_radius():
    batch = plane_pair(t=(0.8, 0.0, 0.0))
    generator = torch.Generator().manual_seed(0)
    kpts = cell_points(1, GRID, CoarseSupervision(), "cpu") + (torch.rand(1, 80, 2, generator=generator) - 0.5) * 2
    spv = keypoint_targets(batch, kpts, kpts.clone())
    assert _pairs(spv) == _shift_pairs(1)
    assert torch.equal(spv["spv_pt1_i"], kpts)
    far = keypoint_targets(batch, kpts, kpts + 4.0, radius=2.0)  # half a cell off: >= 2 px in x and y
    assert len(far["spv_b_ids"]) == 0 and far["conf_matrix_gt"].sum() == 0
    via_coarse = coarse_targets(batch, GRID, GRID, stride=8, keypoints0=kpts, keypoints1=kpts)
    assert _pairs(via_coarse) == _pairs(spv)
    with pytest.raises(InputShapeError):
        coarse_targets(batch, GRID, GRID, keypoints0=kpts)


def test_fine_offset_targets_in_window_units():
    batch = plane_pair(t=(0.95, 0.0, 0.0))  # 9.5 px: one cell and 1.5 px
    spv = coarse_targets(batch, GRID, GRID)
    assert _pairs(spv) == _shift_pairs(1)
    gt, valid = fine_offset_targets(spv, spv["spv_b_ids"], spv["spv_i_ids"], spv["spv_j_ids"], scale=2.0, radius=2.0)
    assert valid.all()
    assert torch.allclose(gt, torch.tensor([1.5 / 4, 0.0]).expand_as(gt), atol=1e-3)


def test_warp_matches_and_sources():
    batch = plane_pair(R=rotation(0.0, 0.05, 0.0), t=(0.3, 0.1, 0.0), batch=2)
    points = torch.tensor([[10.0, 12.0], [40.0, 30.0], [70.5, 50.25]])
    b_ids = torch.tensor([1, 0, 1])
    uv, valid = warp_matches(points, b_ids, batch)
    dense, dense_valid = warp_points(points[None].expand(2, -1, -1), batch)
    assert torch.allclose(uv, dense[b_ids, torch.arange(3)]) and torch.equal(valid, dense_valid[b_ids, torch.arange(3)])
    assert geometry_source(batch) == "depth"
    warp_only = without(batch, "depth0")
    assert geometry_source(warp_only) == "warp"
    assert warp_points(points[None].expand(2, -1, -1), warp_only, reverse=True) is None
    uv_w, valid_w = warp_points(points[None].expand(2, -1, -1), warp_only)
    assert torch.equal(valid_w, dense_valid) and valid_w.sum() >= 4
    assert torch.allclose(uv_w[valid_w], dense[valid_w], atol=0.05)  # bilinear warp0 of a smooth warp
    with pytest.raises(InputShapeError):
        geometry_source({"image0": batch["image0"]})


def test_homography_reverse_uses_the_inverse():
    H = torch.tensor([[1.02, 0.01, 3.0], [-0.01, 0.98, -2.0], [1e-4, 0, 1]])
    batch = homography_pair(H)
    points = torch.tensor([[[20.0, 20.0], [50.0, 40.0]]])
    forward, _ = warp_points(points, batch)
    back, valid = warp_points(forward, batch, reverse=True)
    assert valid.all() and torch.allclose(back, points, atol=1e-3)
