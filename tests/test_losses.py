"""RoMa / Tiny RoMa losses and per-scale ground truth: hand-built cases, properties, upstream parity."""

from __future__ import annotations

import math
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import PlaneScene, apply_homography

from densematch.conventions import normalized_grid, normalized_to_pixel, pixel_to_normalized
from densematch.models.roma.loss import (
    RomaLoss,
    RomaLossConfig,
    TinyRomaLoss,
    TinyRomaLossConfig,
    charbonnier,
    nearest_anchor,
)
from densematch.models.roma.targets import TargetConfig, depth_targets, ground_truth_at, warp_targets

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ helpers
def plane_batch(scenes: list[PlaneScene]) -> dict:
    """Depth-and-pose batch of plane scenes plus the dense warp of their homographies."""

    def stack(values):
        return torch.tensor(np.stack(values), dtype=torch.float32)

    w0, h0 = scenes[0].size0
    w1, h1 = scenes[0].size1
    u, v = np.meshgrid(np.arange(w0, dtype=np.float64), np.arange(h0, dtype=np.float64))
    uv0 = np.stack([u, v], axis=-1)
    warps, valids = [], []
    for scene in scenes:
        uv1 = apply_homography(scene.H_0to1, uv0)
        warps.append(pixel_to_normalized(uv1, w1, h1))
        valids.append((uv1[..., 0] > 0) & (uv1[..., 0] < w1 - 1) & (uv1[..., 1] > 0) & (uv1[..., 1] < h1 - 1))
    return {
        "depth0": stack([s.depth0() for s in scenes]),
        "depth1": stack([s.depth1() for s in scenes]),
        "K0": stack([s.K0 for s in scenes]),
        "K1": stack([s.K1 for s in scenes]),
        "T_0to1": stack([s.T_0to1 for s in scenes]),
        "warp0": stack(warps),
        "valid0": torch.tensor(np.stack(valids)),
        "image1": torch.zeros(len(scenes), 3, h1, w1),
    }


def identity_batch(height: int, width: int, batch: int = 1) -> dict:
    """Warp-only batch: every pixel matches itself."""
    grid = normalized_grid(height, width)
    return {
        "warp0": grid.expand(batch, height, width, 2).clone(),
        "valid0": torch.ones(batch, height, width, dtype=torch.bool),
        "image1": torch.zeros(batch, 3, height, width),
    }


def entry(flow_hw2: torch.Tensor, certainty: torch.Tensor) -> dict:
    return {"flow": flow_hw2.permute(0, 3, 1, 2).contiguous(), "certainty": certainty}


# ------------------------------------------------------------------------------------------ ground truth
def test_depth_targets_match_the_plane_homography():
    scene = PlaneScene((96, 64), size1=(80, 72), seed=3)
    batch = plane_batch([scene])
    for height, width in ((4, 6), (16, 24), (64, 96)):
        warp, prob = depth_targets(
            batch["depth0"], batch["depth1"], batch["K0"], batch["K1"], batch["T_0to1"], height, width
        )
        cells = normalized_to_pixel(normalized_grid(height, width, dtype=torch.float64), 96, 64).numpy()
        expected = pixel_to_normalized(apply_homography(scene.H_0to1, cells), 80, 72)
        valid = prob[0].bool().numpy()
        assert valid.mean() > 0.5
        np.testing.assert_allclose(warp[0].numpy()[valid], expected[valid], atol=2e-4)


def test_depth_targets_reject_occlusion_and_missing_depth():
    scene = PlaneScene((64, 48), seed=1)
    batch = plane_batch([scene])
    full = depth_targets(batch["depth0"], batch["depth1"], batch["K0"], batch["K1"], batch["T_0to1"], 48, 64)[
        1
    ]
    depth0 = batch["depth0"].clone()
    depth0[0, 10:20, 10:20] = 0  # unknown depth
    depth1 = batch["depth1"] * 0.5  # an occluder in front of everything in image 1
    no_depth = depth_targets(depth0, batch["depth1"], batch["K0"], batch["K1"], batch["T_0to1"], 48, 64)[1]
    occluded = depth_targets(batch["depth0"], depth1, batch["K0"], batch["K1"], batch["T_0to1"], 48, 64)[1]
    assert full[0, 12:18, 12:18].all() and not no_depth[0, 12:18, 12:18].any()
    assert full.sum() > 1000 and occluded.sum() == 0


def test_warp_targets_agree_with_depth_targets_on_a_plane():
    scene = PlaneScene((96, 64), seed=5)
    batch = plane_batch([scene])
    for height, width in ((8, 12), (32, 48)):
        dw, dp = depth_targets(
            batch["depth0"], batch["depth1"], batch["K0"], batch["K1"], batch["T_0to1"], height, width
        )
        ww, wp = ground_truth_at(batch, height, width, TargetConfig(source="warp"))
        both = (dp * wp).bool()
        assert both.sum() > 0.8 * dp.sum()
        assert (ww - dw).norm(dim=-1)[both].max() < 2e-3  # bilinear interpolation of a smooth warp


def test_warp_targets_drop_cells_across_a_discontinuity_and_invalid_pixels():
    batch = identity_batch(32, 32)
    batch["warp0"][0, :, 15:, 0] += 0.75  # columns 15+ jump by 12 px of a 32 px image
    batch["valid0"][0, :4, :4] = False
    # scale 2: cell 7 interpolates pixels 14 and 15 (across the jump), cells 6 and 8 do not
    prob2 = warp_targets(batch["warp0"], batch["valid0"], 16, 16, size1=(32, 32))[1]
    assert prob2[0, :, 7].sum() == 0 and prob2[0, 2:, 6].all() and prob2[0, 2:, 8].all()
    # scale 4: bilinear samples at the cell centres read pixels 4j+1 and 4j+2 only: no cell straddles
    prob4 = warp_targets(batch["warp0"], batch["valid0"], 8, 8, size1=(32, 32))[1]
    assert prob4[0, 1:].all()
    assert prob4[0, 0, 0] == 0 and prob2[0, 0, 0] == 0 and prob2[0, 1, 1] == 0 and prob2[0, 2, 2] == 1
    loose = warp_targets(batch["warp0"], batch["valid0"], 16, 16, size1=(32, 32), max_spread_px=7.0)[1]
    assert loose[0, 2:, 7].all()


def test_ground_truth_sanitises_non_finite_warps():
    batch = identity_batch(16, 16)
    batch["warp0"][0, 5, 5] = float("nan")
    batch["valid0"][0, 5, 5] = False
    warp, prob = ground_truth_at(batch, 16, 16)
    assert torch.isfinite(warp).all() and prob[0, 5, 5] == 0 and prob.sum() == 255


def test_ground_truth_source_selection():
    scene = PlaneScene((32, 32), seed=2)
    batch = plane_batch([scene])
    depth = ground_truth_at(batch, 8, 8)
    assert torch.equal(
        depth[0],
        depth_targets(batch["depth0"], batch["depth1"], batch["K0"], batch["K1"], batch["T_0to1"], 8, 8)[0],
    )
    warp_only = {k: batch[k] for k in ("warp0", "valid0", "image1")}
    assert torch.equal(
        ground_truth_at(warp_only, 8, 8)[0], ground_truth_at(batch, 8, 8, TargetConfig("warp"))[0]
    )
    with pytest.raises(ValueError, match="depth0"):
        ground_truth_at(warp_only, 8, 8, TargetConfig(source="depth"))


# ------------------------------------------------------------------------------------------ pieces
def test_charbonnier_hand_values():
    c, a = 1e-3, 0.5
    assert charbonnier(torch.tensor(0.0), a, c).item() == pytest.approx(c**a)
    assert charbonnier(torch.tensor(c), a, c).item() == pytest.approx(c**a * 2 ** (a / 2))
    assert charbonnier(torch.tensor(3 * c), 1.0, c).item() == pytest.approx(c * math.sqrt(10))


def test_nearest_anchor_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(2, 7, 9, 2, generator=generator) * 2.4 - 1.2  # also outside [-1, 1]
    lin = torch.linspace(-1 + 1 / 64, 1 - 1 / 64, 64)
    anchors = torch.stack(torch.meshgrid(lin, lin, indexing="ij")[::-1], dim=-1).reshape(-1, 2)
    brute = (anchors[None, :, None, None] - points[:, None]).norm(dim=-1).argmin(dim=1)
    assert torch.equal(nearest_anchor(points, 64), brute)


# ------------------------------------------------------------------------------------------ RoMa loss
def test_roma_loss_hand_built_single_scale():
    """One scale-16 grid of 2 x 2 cells, identity GT; every term computed by hand."""
    batch = identity_batch(32, 32)
    gt = normalized_grid(2, 2)[None]
    offset = torch.tensor([[[[0.0, 0.0], [0.01, 0.0]], [[0.0, -0.02], [0.0, 0.0]]]])
    certainty = torch.tensor([[[[0.0, 1.0], [-2.0, 3.0]]]])
    anchors = 4  # 4 x 4 anchors: cell centres of the 2 x 2 grid are not anchors
    gm_cls = torch.zeros(1, anchors * anchors, 2, 2)
    gm_cls[0, 0] = 2.0  # anchor 0 (top left) gets a higher logit everywhere
    gm_cert = torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]]])
    corresps = {16: {**entry(gt + offset, certainty), "gm_cls": gm_cls, "gm_certainty": gm_cert}}
    out = RomaLoss(RomaLossConfig(alpha=0.5, c=1e-4))(corresps, batch)

    def bce_ones(logits):  # BCE with target 1
        return float(np.mean([math.log1p(math.exp(-x)) for x in logits]))

    cs = 1e-4 * 16
    epes = [0.0, 0.01, 0.02, 0.0]
    regression = np.mean([cs**0.5 * ((e / cs) ** 2 + 1) ** 0.25 for e in epes])
    # GT anchors of the 2 x 2 cell centres (+-0.5) on lin = (-0.75, -0.25, 0.25, 0.75): ties go to the
    # lower index, so (-0.5, -0.5) -> anchor 0, (0.5, -0.5) -> 2, (-0.5, 0.5) -> 8, (0.5, 0.5) -> 10
    log_z = math.log(math.exp(2.0) + 15)
    cls = np.mean([log_z - 2.0, log_z, log_z, log_z])
    expected = 0.01 * bce_ones([1.0, -1.0, 0.5, 0.0]) + cls + 0.01 * bce_ones([0, 1, -2, 3]) + regression
    assert out.terms["gm_cls_loss_16"].item() == pytest.approx(cls, rel=1e-6)
    assert out.terms["delta_regression_loss_16"].item() == pytest.approx(regression, rel=1e-6)
    assert out.total.item() == pytest.approx(expected, rel=1e-6)


def test_roma_loss_local_masking_uses_the_coarser_error():
    batch = identity_batch(64, 64)
    coarse = normalized_grid(4, 4)[None].clone()
    coarse[0, 0, 0] += 0.5  # far off: the scale-8 cells below it leave the loss
    fine = normalized_grid(8, 8)[None].clone()
    fine[0, :2, :2] += 0.3  # error only under the far-off coarse cell
    corresps = {16: entry(coarse, torch.zeros(1, 1, 4, 4)), 8: entry(fine, torch.zeros(1, 1, 8, 8))}
    out = RomaLoss()(corresps, batch)
    cs = 1e-4 * 8
    assert out.terms["delta_regression_loss_8"].item() == pytest.approx(
        cs**0.5, rel=1e-6
    )  # masked cells gone
    loose = RomaLoss(RomaLossConfig(local_largest_scale=4))(corresps, batch)
    epe = 0.3 * math.sqrt(2)
    expected = (4 * cs**0.5 * ((epe / cs) ** 2 + 1) ** 0.25 + 60 * cs**0.5) / 64  # all 64 cells count
    assert loose.terms["delta_regression_loss_8"].item() == pytest.approx(expected, rel=1e-5)


def test_roma_loss_without_valid_pixels_is_zero_and_differentiable():
    batch = identity_batch(32, 32)
    batch["valid0"][:] = False
    flow = normalized_grid(2, 2)[None].clone().requires_grad_(True)
    gm_cls = torch.randn(1, 16, 2, 2, requires_grad=True)
    corresps = {
        16: {
            **entry(flow, torch.zeros(1, 1, 2, 2)),
            "gm_cls": gm_cls,
            "gm_certainty": torch.zeros(1, 1, 2, 2),
        }
    }
    out = RomaLoss(RomaLossConfig(ce_weight=0.0))(corresps, batch)
    assert out.total.item() == 0.0
    out.total.backward()
    assert torch.equal(flow.grad, torch.zeros_like(flow)) and torch.equal(
        gm_cls.grad, torch.zeros_like(gm_cls)
    )


def _random_corresps(batch: dict, scales, generator, gm: bool) -> dict:
    height, width = batch["depth0"].shape[-2:]
    corresps = {}
    for s in scales:
        h, w = height // s, width // s
        x2, _ = ground_truth_at(batch, h, w)
        noise = (
            torch.randn(len(x2), h, w, 2, generator=generator)
            * 0.03
            * torch.rand(len(x2), h, w, 1, generator=generator)
        )
        corresps[s] = entry(x2 + noise, torch.randn(len(x2), 1, h, w, generator=generator))
        if gm and s == max(scales):
            corresps[s]["gm_cls"] = torch.randn(len(x2), 4096, h, w, generator=generator) * 3
            corresps[s]["gm_certainty"] = torch.randn(len(x2), 1, h, w, generator=generator)
    return corresps


@pytest.mark.parametrize(
    "loss_class,scales,gm", [(RomaLoss, (16, 8, 4, 2, 1), True), (TinyRomaLoss, (8, 4), False)]
)
def test_split_batch_with_count_reduction_equals_whole_batch(loss_class, scales, gm):
    """What DDP relies on: shares of two half batches (counts summed over both) add up to the whole loss."""
    scenes = [PlaneScene((64, 48), seed=s) for s in range(4)]
    batch = plane_batch(scenes)
    batch["depth0"][1, :20] = 0
    corresps = _random_corresps(batch, scales, torch.Generator().manual_seed(0), gm)
    whole = loss_class()(corresps, batch).total.item()

    def half(part):
        index = slice(0, 1) if part == 0 else slice(1, 4)  # unequal halves, unequal valid counts
        return (
            {s: {k: v[index] for k, v in e.items()} for s, e in corresps.items()},
            {k: v[index] for k, v in batch.items()},
        )

    counts = []
    for part in (0, 1):
        loss_class(count_reducer=lambda c: counts.append(c) or c)(*half(part))
    shares = [
        loss_class(count_reducer=lambda c: counts[0] + counts[1])(*half(part)).total.item() for part in (0, 1)
    ]
    assert sum(shares) == pytest.approx(whole, rel=1e-5)
    assert abs(loss_class()(*half(0)).total.item() - whole) > 1e-3  # a plain per-half mean would differ


# ------------------------------------------------------------------------------------------ Tiny RoMa loss
def test_tiny_roma_loss_hand_built():
    batch = identity_batch(32, 32)
    gt = normalized_grid(4, 4)[None]
    offset = torch.zeros(1, 4, 4, 2)
    offset[0, 0, 0, 0] = 0.004  # below 8 * 0.001: certainty target stays 1
    offset[0, 0, 1, 0] = 0.02  # above: target 0, still in the regression (no local mask at scale 8)
    logits = torch.zeros(1, 1, 4, 4)
    config = TinyRomaLossConfig()
    out = TinyRomaLoss(config)({8: entry(gt + offset, logits)}, batch)
    cs, a = 1e-4 * 8, 0.15
    epes = np.zeros(16)
    epes[0], epes[1] = 0.004, 0.02
    regression = np.mean(cs**a * ((epes / cs) ** 2 + 1) ** (a / 2))
    bce = math.log(2)  # logits 0: BCE is log 2 for either target
    assert out.total.item() == pytest.approx(0.01 * bce + regression, rel=1e-6)
    target_check = TinyRomaLoss(config)({8: entry(gt + offset, torch.full((1, 1, 4, 4), 5.0))}, batch)
    bce_high = (15 * math.log1p(math.exp(-5)) + (5 + math.log1p(math.exp(-5)))) / 16
    assert target_check.terms["delta_certainty_loss_8"].item() == pytest.approx(bce_high, rel=1e-6)


def test_tiny_roma_loss_local_mask_at_scale_4():
    batch = identity_batch(32, 32)
    gt = normalized_grid(8, 8)[None]
    offset = torch.zeros(1, 8, 8, 2)
    offset[0, 0, 0, 0] = 0.2  # beyond (2/512) * 4 * 4 = 0.03125: dropped from the regression
    out = TinyRomaLoss()({4: entry(gt + offset, torch.zeros(1, 1, 8, 8))}, batch)
    assert out.terms["delta_regression_loss_4"].item() == pytest.approx((4e-4) ** 0.15, rel=1e-6)


# ------------------------------------------------------------------------------------------ upstream parity
def _oracle_python() -> Path | None:
    candidate = Path(os.environ.get("ROMATCH_ORACLE_PYTHON", REPO.parent / "oracle" / "bin" / "python"))
    return candidate if candidate.is_file() else None


ORACLE_SCRIPT = textwrap.dedent("""
    import sys, types, torch
    sys.modules["wandb"] = types.SimpleNamespace(log=lambda *a, **k: None)
    from romatch.losses.robust_loss import RobustLosses
    from romatch.losses.robust_loss_tiny_roma import RobustLosses as TinyLosses
    case = torch.load(sys.argv[1])
    b = case["batch"]
    K0, K1 = b["K0"].clone(), b["K1"].clone()
    K0[:, :2, 2] += 0.5; K1[:, :2, 2] += 0.5  # OpenCV -> romatch's pixel-corner convention
    ub = {"im_A_depth": b["depth0"], "im_B_depth": b["depth1"], "T_1to2": b["T_0to1"], "K1": K0, "K2": K1}
    roma = RobustLosses(ce_weight=0.01, local_dist={1: 4, 2: 4, 4: 8, 8: 8}, local_largest_scale=8,
                        alpha=0.5, c=1e-4)
    tiny = TinyLosses(ce_weight=0.01, local_dist={4: 4}, alpha={4: 0.15, 8: 0.15}, c=1e-4,
                      epe_mask_prob_th=0.001)
    print(roma(case["roma"], ub).item(), tiny(case["tiny"], ub).item())
""")


def test_losses_match_romatch(tmp_path):
    oracle = _oracle_python()
    if oracle is None:
        pytest.skip(
            "no romatch oracle environment (set ROMATCH_ORACLE_PYTHON; see shared/tools/romatch-oracle.sh)"
        )
    scenes = [PlaneScene((128, 96), seed=s) for s in range(2)]
    batch = plane_batch(scenes)
    batch["depth0"][0, :10, :20] = 0
    generator = torch.Generator().manual_seed(1)
    case = {
        "batch": {k: batch[k] for k in ("depth0", "depth1", "K0", "K1", "T_0to1")},
        "roma": _random_corresps(batch, (16, 8, 4, 2, 1), generator, gm=True),
        "tiny": _random_corresps(batch, (8, 4), generator, gm=False),
    }
    torch.save(case, tmp_path / "case.pt")
    script = tmp_path / "oracle.py"
    script.write_text(ORACLE_SCRIPT)
    result = subprocess.run(
        [str(oracle), str(script), str(tmp_path / "case.pt")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    upstream_roma, upstream_tiny = (float(v) for v in result.stdout.split()[-2:])
    depth_batch = case["batch"]
    assert RomaLoss()(case["roma"], depth_batch).total.item() == pytest.approx(upstream_roma, rel=1e-5)
    assert TinyRomaLoss()(case["tiny"], depth_batch).total.item() == pytest.approx(upstream_tiny, rel=1e-5)


def test_both_source_keeps_depth_targets_where_valid0_agrees():
    scene = PlaneScene((64, 48), seed=4)
    batch = plane_batch([scene])
    batch["valid0"][0, :, :32] = False  # e.g. a hole the data engine knows about and the depth does not
    depth_warp, depth_prob = ground_truth_at(batch, 12, 16, TargetConfig(source="depth"))
    warp, prob = ground_truth_at(batch, 12, 16, TargetConfig(source="both"))
    assert torch.equal(warp, depth_warp)
    assert prob[0, :, :8].sum() == 0 and torch.equal(prob[0, :, 8:], depth_prob[0, :, 8:] * prob[0, :, 8:])
    assert prob[0, :, 9:].sum() > 0.8 * depth_prob[0, :, 9:].sum()
