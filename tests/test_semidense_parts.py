"""Properties of the shared semi-dense parts (S2LD, IMAMatch): attention, transformer, positional encoding,
dual-softmax matching with border removal and ground-truth padding, fine windows, soft-argmax."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from densematch.models.semidense.coarse_matching import (
    CoarseMatching,
    CoarseMatchingConfig,
    border_allowed,
    cell_to_pixel,
    dual_softmax,
    max_candidates,
    mutual_matches,
    pad_with_ground_truth,
)
from densematch.models.semidense.fine_windows import gather_windows, unfold_windows
from densematch.models.semidense.linear_attention import elu_feature_map, full_attention, linear_attention
from densematch.models.semidense.position_encoding import PositionEncodingSine, sine_encoding
from densematch.models.semidense.resnet_fpn import ResNetFPN82
from densematch.models.semidense.soft_argmax import spatial_expectation
from densematch.models.semidense.transformer import LocalFeatureTransformer, TransformerConfig


def test_linear_attention_equals_quadratic_form():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 4, 8, generator=g, dtype=torch.float64) for n in (5, 7, 7))
    kv_mask = torch.ones(2, 7, dtype=torch.bool)
    kv_mask[1, 4:] = False
    out = linear_attention(q, k, v, kv_mask=kv_mask, eps=0.0)
    weights = torch.einsum("nlhd,nshd->nlsh", elu_feature_map(q), elu_feature_map(k)) * kv_mask[:, None, :, None]
    expected = torch.einsum("nlsh,nshd->nlhd", weights / weights.sum(2, keepdim=True), v)
    torch.testing.assert_close(out, expected)


def test_full_attention_equals_sdpa_and_honours_masks():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, n, 2, 4, generator=g) for n in (3, 6, 6))
    expected = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(full_attention(q, k, v), expected)
    mask = torch.tensor([[True] * 4 + [False] * 2])
    v2 = v.clone()
    v2[:, 4:] = 100.0  # masked values must not leak
    torch.testing.assert_close(full_attention(q, k, v, torch.ones(1, 3, dtype=torch.bool), mask),
                               full_attention(q, k, v2, torch.ones(1, 3, dtype=torch.bool), mask))


@pytest.mark.parametrize("cross_update", ["sequential", "simultaneous"])
def test_transformer_ignores_padded_source_positions(cross_update):
    torch.manual_seed(0)
    model = LocalFeatureTransformer(TransformerConfig(d_model=32, nhead=4, layer_names=("self", "cross"),
                                                      cross_update=cross_update)).eval()
    f0, f1 = torch.randn(1, 6, 32), torch.randn(1, 9, 32)
    m0, m1 = torch.ones(1, 6, dtype=torch.bool), torch.ones(1, 9, dtype=torch.bool)
    m1[:, 7:] = False
    out0, out1 = model(f0, f1, m0, m1)
    f1b = f1.clone()
    f1b[:, 7:] = torch.randn(1, 2, 32) * 10
    out0b, out1b = model(f0, f1b, m0, m1)
    torch.testing.assert_close(out0, out0b)
    torch.testing.assert_close(out1[:, :7], out1b[:, :7])


def test_cross_update_order_matters():
    torch.manual_seed(0)
    seq = LocalFeatureTransformer(TransformerConfig(d_model=16, nhead=2, layer_names=("cross",)))
    sim = LocalFeatureTransformer(TransformerConfig(d_model=16, nhead=2, layer_names=("cross",),
                                                    cross_update="simultaneous"))
    sim.load_state_dict(seq.state_dict())
    f0, f1 = torch.randn(1, 4, 16), torch.randn(1, 5, 16)
    a0, a1 = seq(f0, f1)
    b0, b1 = sim(f0, f1)
    torch.testing.assert_close(a0, b0)  # image 0 is updated from the same features
    assert not torch.allclose(a1, b1)  # image 1 sees the updated image-0 features only in "sequential"
    torch.testing.assert_close(b1, sim.layers[0](f1, f0))


def test_sine_encoding_reproduces_the_div_term_quirk():
    pe = sine_encoding(256, (4, 5))
    assert pe.shape == (1, 256, 4, 5)
    # quirk: frequency i is exp(-2i) (not 10000^(-4i/256)); positions are 1-based
    x = torch.arange(1, 6, dtype=torch.float32)
    for i in (0, 1, 5):
        torch.testing.assert_close(pe[0, 4 * i, 0], torch.sin(x * math.exp(-2 * i)))
        torch.testing.assert_close(pe[0, 4 * i + 3, :, 0], torch.cos(torch.arange(1, 5.0) * math.exp(-2 * i)))
    fixed = sine_encoding(256, (4, 5), fixed=True)
    torch.testing.assert_close(fixed[0, 4, 0], torch.sin(x * math.exp(-2 * math.log(10000.0) / 128)))
    module = PositionEncodingSine(8, (3, 3))
    assert "pe" not in module.state_dict()
    torch.testing.assert_close(module(torch.zeros(1, 8, 2, 3)), sine_encoding(8, (3, 3))[..., :2, :])


def test_dual_softmax_and_masks():
    torch.manual_seed(0)
    f0, f1 = torch.randn(1, 6, 16), torch.randn(1, 8, 16)
    conf = dual_softmax(f0, f1, 0.1)
    sim = f0 @ f1.transpose(1, 2) / 16 / 0.1
    torch.testing.assert_close(conf, sim.softmax(1) * sim.softmax(2))
    m0, m1 = torch.ones(1, 6, dtype=torch.bool), torch.ones(1, 8, dtype=torch.bool)
    m1[:, 6:] = False
    masked = dual_softmax(f0, f1, 0.1, m0, m1)
    assert masked[:, :, 6:].max() < 1e-20
    assert torch.allclose(masked.sum(2) <= 1 + 1e-6, torch.tensor(True))


def test_border_removal_follows_the_valid_region():
    a0, _ = border_allowed((6, 7), (6, 7), 2)
    grid = a0.view(6, 7)
    assert grid[2:4, 2:5].all() and grid.sum() == 2 * 3
    mask = torch.zeros(1, 6, 7, dtype=torch.bool)
    mask[:, :5, :6] = True  # valid 5 x 6 cells at the top left
    p0, _ = border_allowed((6, 7), (6, 7), 2, mask, mask)
    assert p0.view(6, 7).nonzero().tolist() == [[2, 2], [2, 3]]
    n0, _ = border_allowed((6, 7), (6, 7), 0)
    assert n0.all()


def test_mutual_nearest_neighbours_with_threshold():
    conf = torch.full((1, 4, 4), 0.01)
    conf[0, 0, 1], conf[0, 1, 1] = 0.9, 0.5  # cell 1 of image 1 is claimed twice: only the best is mutual
    conf[0, 2, 3] = 0.3
    conf[0, 3, 0] = 0.1
    allowed = torch.ones(1, 4, dtype=torch.bool)
    b, i, j, mconf = mutual_matches(conf, 0.2, allowed, allowed)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1), (2, 3)]
    torch.testing.assert_close(mconf, torch.tensor([0.9, 0.3]))
    b, i, j, _ = mutual_matches(conf, 0.0, allowed, torch.tensor([[True, True, True, False]]))
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1), (3, 0)]


def test_training_padding_with_ground_truth():
    spv = (torch.zeros(50, dtype=torch.long), torch.arange(50), torch.arange(50) + 100)
    pred = (torch.zeros(3, dtype=torch.long), torch.tensor([5, 6, 7]), torch.tensor([1, 2, 3]), torch.rand(3) + 0.5)
    b, i, j, mconf = pad_with_ground_truth(*pred, *spv, num_train=40, pad_min=10)
    assert len(b) == 40 and (mconf[:3] > 0).all() and (mconf[3:] == 0).all()
    assert torch.equal(j[3:] - i[3:], torch.full((37,), 100))  # padded entries are ground-truth pairs
    many = (torch.zeros(100, dtype=torch.long), torch.arange(100), torch.arange(100), torch.rand(100) + 0.5)
    g = torch.Generator().manual_seed(0)
    b, i, j, mconf = pad_with_ground_truth(*many, *spv, num_train=40, pad_min=10, generator=g)
    assert len(b) == 40 and (mconf[:30] > 0).all() and (mconf[30:] == 0).all()
    b, *_ = pad_with_ground_truth(*many, *spv, num_train=10, pad_min=200)  # pad_min clamped for small images
    assert len(b) == 10
    assert max_candidates(2, 12, 20) == 40
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[:, :2, :3] = True
    assert max_candidates(1, 16, 16, mask, torch.ones(1, 4, 4, dtype=torch.bool)) == 6


def test_coarse_matching_module_modes():
    torch.manual_seed(0)
    feat = torch.randn(1, 36, 8)
    module = CoarseMatching(CoarseMatchingConfig(threshold=0.0, border=1, train_coarse_percent=0.5,
                                                 train_pad_num_gt_min=4)).eval()
    out = module(feat, feat.clone(), (6, 6), (6, 6))
    assert torch.equal(out["i_ids"], out["j_ids"]) and len(out["i_ids"]) == 16  # identity inside the border
    assert not out["gt_mask"].any()
    module.train()
    with pytest.raises(ValueError, match="ground_truth"):
        module(feat, feat, (6, 6), (6, 6))
    gt = {"spv_b_ids": torch.zeros(5, dtype=torch.long), "spv_i_ids": torch.arange(5), "spv_j_ids": torch.arange(5)}
    out = module(feat, feat, (6, 6), (6, 6), ground_truth=gt)
    assert len(out["b_ids"]) == 18 and out["gt_mask"].sum() == 4
    torch.testing.assert_close(cell_to_pixel(torch.tensor([0, 7, 13]), 6, 8.0),
                               torch.tensor([[0.0, 0.0], [8.0, 8.0], [8.0, 16.0]]))


def test_gather_windows_matches_slicing_and_unfold():
    torch.manual_seed(0)
    feat = torch.randn(2, 3, 12, 16)
    centres = torch.tensor([[5, 4], [0, 0], [15, 11]])
    b_ids = torch.tensor([1, 0, 1])
    win = gather_windows(feat, b_ids, centres, 5)
    assert win.shape == (3, 25, 3)
    padded = F.pad(feat, (2, 2, 2, 2))
    torch.testing.assert_close(win[0], padded[1, :, 4:9, 5:10].reshape(3, 25).T)
    torch.testing.assert_close(win[1, 12], feat[0, :, 0, 0])  # centre entry
    assert (win[1, :2] == 0).all()  # zero padding outside the map
    unfolded = unfold_windows(feat, 5, 4)  # LoFTR: one window per 4 px step, centred on its top-left pixel
    assert unfolded.shape == (2, 12, 25, 3)
    torch.testing.assert_close(unfolded[1, 1 * 4 + 2], gather_windows(feat, torch.tensor([1]),
                                                                      torch.tensor([[8, 4]]), 5)[0])


def test_spatial_expectation_and_std():
    delta = torch.zeros(1, 5, 5)
    delta[0, 1, 4] = 1.0
    coords, std = spatial_expectation(delta)
    torch.testing.assert_close(coords, torch.tensor([[1.0, -0.5]]))
    assert std.item() == pytest.approx(2e-5, abs=1e-6)  # sqrt of the 1e-10 clamp, twice
    coords, std = spatial_expectation(torch.full((1, 5, 5), 1 / 25))
    torch.testing.assert_close(coords, torch.zeros(1, 2), atol=1e-6, rtol=0)
    assert std.item() == pytest.approx(2 * math.sqrt(0.5), rel=1e-5)  # var of {-1, -.5, 0, .5, 1} is 0.5


def test_resnet_fpn_strides():
    with torch.no_grad():
        coarse, fine = ResNetFPN82().eval()(torch.rand(1, 1, 48, 64))
    assert coarse.shape == (1, 256, 6, 8) and fine.shape == (1, 128, 24, 32)
