"""IMAMatch: checkpoint layout, weights and options, the network parts' properties, inference and training
forwards on small inputs (random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import densematch
from densematch.errors import ConfigError, InputShapeError, WeightsError
from densematch.models.imamatch.attention import FocusedLinearAttention
from densematch.models.imamatch.coarse import CoarseMatches, select_coarse
from densematch.models.imamatch.config import IMAMatchSettings
from densematch.models.imamatch.densify import fine_queries, subquery_offsets
from densematch.models.imamatch.fine import sample_windows, window_offsets
from densematch.models.imamatch.inference import network_size, prepare_grey
from densematch.registry import get_entry

NAMES = ("imamatch_megadepth", "imamatch_scannet")


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_layout_equals_the_reference_key_list(name, shared_dir):
    entry = get_entry(name)
    assert entry.kind == "matches" and not entry.weights and "no weights are published" in entry.weights_note
    model = densematch.load(name, device="meta", weights=False)
    rows = (shared_dir / "spec" / "imamatch_keys.tsv").read_text().splitlines()[1:]
    expected = [(r.split("\t")[0], r.split("\t")[1]) for r in rows]
    got = [(k, "[" + ",".join(str(d) for d in v.shape) + "]") for k, v in model.state_dict().items()]
    assert got == expected
    assert model.input_spec.channels == "grey" and model.input_spec.size_multiple == 32


def test_weights_none_explains_how_to_get_them():
    with pytest.raises(WeightsError, match="densematch train imamatch_megadepth"):
        densematch.load("imamatch_megadepth")


def test_reference_style_checkpoints_load_strictly(tmp_path):
    torch.manual_seed(0)
    model = densematch.load("imamatch_scannet", weights=False)
    torch.save({"model": {"module." + k: v for k, v in model.state_dict().items()}}, tmp_path / "ddp.pth")
    loaded = densematch.load("imamatch_scannet", weights=tmp_path / "ddp.pth")
    assert loaded.arch.fix_bug_for_scannet and loaded.settings.rplus == 1.5 and loaded.settings.use_ba
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    state = model.state_dict()
    state.pop("regression2.3.bias")
    with pytest.raises(WeightsError, match="regression2.3.bias"):
        densematch.load("imamatch_scannet", weights=state)


@pytest.mark.parametrize("options, message", [
    ({"add_matches": 3}, "add_matches"), ({"resize": 100}, "resize"), ({"coarse_threshold": 1.5}, "coarse_threshold"),
    ({"allow_reverse": "yes"}, "allow_reverse"), ({"resise": 640}, "unknown IMAMatch option"),
])
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        densematch.load("imamatch_megadepth", weights=False, **options)


def test_published_test_settings():
    md, sn = densematch.load("imamatch_megadepth", device="meta", weights=False).settings, \
        densematch.load("imamatch_scannet", device="meta", weights=False).settings
    assert (md.resize, md.coarse_threshold, md.high_threshold, md.add_matches, md.iter_optimize, md.allow_reverse,
            md.rplus, md.use_ba) == (1216, 0.2, 0.6, 4, True, True, 1.0, False)
    assert (sn.resize, sn.coarse_threshold, sn.add_matches, sn.rplus, sn.use_ba) == (640, 0.01, 0, 1.5, True)


def test_focused_attention_is_a_normalised_linear_attention_plus_a_conv():
    torch.manual_seed(0)
    attn = FocusedLinearAttention(head_dim=8)
    q, k, v = torch.randn(2, 12, 3, 8), torch.randn(2, 12, 3, 8), torch.randn(2, 12, 3, 8)
    with torch.no_grad():
        attn.dwc.weight.zero_()
        attn.dwc.bias.zero_()
    out = attn(q, k, v, height=3)
    perm = torch.randperm(12)
    assert torch.allclose(out, attn(q, k[:, perm], v[:, perm], height=3), atol=1e-5)  # keys are a set
    assert torch.allclose(attn(q, k, torch.ones_like(v), height=3), torch.ones_like(v), atol=1e-4)  # weights sum to 1
    with torch.no_grad():
        attn.dwc.bias.fill_(0.5)
    assert torch.allclose(attn(q, k, v, height=3), out + 0.5, atol=1e-5)


def test_coarse_selection_mutual_and_one_to_many():
    conf = torch.tensor([[[0.9, 0.05, 0.0], [0.8, 0.1, 0.0], [0.0, 0.0, 0.7]]])  # image-1 cell 0 wanted by two
    mutual = select_coarse(conf, width=3, threshold=0.05, allow_reverse=False)
    assert mutual.query.tolist() == [[0, 0], [2, 0]] and mutual.reference.tolist() == [[0, 0], [2, 0]]
    assert torch.allclose(mutual.confidence, torch.tensor([0.9, 0.7])) and mutual.inliers is None
    assert select_coarse(conf, width=3, threshold=0.95, allow_reverse=False) is None


def test_densification_grids_and_order():
    assert subquery_offsets(4).tolist() == [[1, 1], [2, 1], [1, 2], [2, 2]]
    assert subquery_offsets(16).shape == (16, 2) and subquery_offsets(9).min() == 0
    cells = torch.tensor([[1, 2], [3, 0]])
    coarse = CoarseMatches(cells, cells + 1, torch.tensor([0.9, 0.3]), False, cells, cells, None)
    q = fine_queries(coarse, add_matches=4, high_threshold=0.6, rplus=1.5)
    assert q.query.tolist() == [[13, 1], [14, 1], [13, 2], [14, 2], [5, 9]]  # low first, then the confident one
    assert q.reference.tolist() == [[17.5, 5.5]] * 4 + [[9.5, 13.5]]
    assert q.densified.tolist() == [True] * 4 + [False] and q.confidence.tolist()[-1] == pytest.approx(0.9)
    plain = fine_queries(coarse, add_matches=0, high_threshold=0.6, rplus=1.0)
    assert plain.query.tolist() == [[5, 9], [13, 1]] and not plain.densified.any()


def test_windows_sample_feature_values_at_integer_pixels():
    feature = torch.arange(2 * 6 * 8, dtype=torch.float32).reshape(1, 2, 6, 8)
    offsets = window_offsets(3)
    assert offsets[4].tolist() == [0, 0] and offsets[0].tolist() == [-1, -1] and offsets[1].tolist() == [0, -1]
    tokens = sample_windows(feature, torch.tensor([[3.0, 2.0], [0.0, 0.0]]), offsets)
    assert tokens.shape == (2, 9, 2)
    assert torch.equal(tokens[0, :, 0], feature[0, 0, 1:4, 2:5].reshape(-1))
    assert tokens[1, 0].abs().max() < 1e-6  # outside: zero padding
    batched = sample_windows(torch.cat([feature, feature + 1]), torch.tensor([[3.0, 2.0]]), offsets, torch.tensor([1]))
    assert torch.equal(batched[0], tokens[0] + 1)


def test_network_input_sizes():
    assert network_size(1296, 968, 640, pad_to_square=False) == (640, 480)
    assert network_size(1296, 968, 1216, pad_to_square=True) == (1216, 908)
    grey, scale, size = prepare_grey(np.zeros((50, 100, 3), np.uint8), 128, pad_to_square=True)
    assert grey.shape == (1, 1, 128, 128) and size == (100, 50) and scale == (100 / 128, 50 / 64)
    same = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    grey, scale, _ = prepare_grey(same, 128, pad_to_square=False)
    assert scale == (1.0, 1.0) and grey.shape == (1, 1, 96, 128)  # not resampled


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return densematch.load("imamatch_megadepth", weights=False, resize=128, coarse_threshold=0.0, add_matches=0)


def test_match_images_returns_points_in_the_images_as_given(small_model, shared_data):
    demo = shared_data / "demo_pairs"
    out = small_model.match_images(demo / "roma_toronto_A.jpg", demo / "roma_toronto_B.jpg")
    sizes = [densematch.io.image_size(demo / n) for n in ("roma_toronto_A.jpg", "roma_toronto_B.jpg")]
    assert out["kpts0"].dtype == torch.float32 and out["kpts0"].shape == out["kpts1"].shape
    assert out["kpts0"].shape[0] == out["scores"].shape[0] > 0 and isinstance(out["reverse"], bool)
    for pts, (w, h) in zip((out["kpts0"], out["kpts1"]), sizes, strict=True):
        assert pts.min() >= -0.5 and (pts[:, 0] <= w - 0.5).all() and (pts[:, 1] <= h - 0.5).all()
    assert out["pose_refinement"] is None
    with pytest.raises(densematch.errors.ImageReadError):
        small_model.match_images(demo / "missing.jpg", demo / "roma_toronto_B.jpg")


def test_forward_rejects_bad_shapes(small_model):
    with pytest.raises(InputShapeError, match="multiples of 32"):
        small_model(torch.zeros(1, 1, 60, 64), torch.zeros(1, 1, 60, 64))
    with pytest.raises(InputShapeError, match="equal"):
        small_model(torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 96))


def test_scannet_bug_height_needs_multiples_of_60(monkeypatch):
    model = densematch.load("imamatch_scannet", weights=False)

    def no_work(*args):
        raise AssertionError("the network ran before the size check")

    monkeypatch.setattr(model, "features", no_work)
    with pytest.raises(InputShapeError, match="multiple of 60"):  # before any network work
        model(torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64))
    with pytest.raises(InputShapeError, match="15 cells at 1/32"):  # 240 cells at 1/8 and 60 at 1/16 fit
        model(torch.zeros(1, 1, 96, 160), torch.zeros(1, 1, 96, 160))


def test_training_forward_targets_and_gradients():
    torch.manual_seed(0)
    model = densematch.load("imamatch_megadepth", weights=False).train()
    b, h, w = 2, 64, 64
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    identity = torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], dim=-1).float()
    batch = {"image0": torch.rand(b, 1, h, w), "image1": torch.rand(b, 1, h, w),
             "warp0": identity.expand(b, h, w, 2), "valid0": torch.ones(b, h, w, dtype=torch.bool)}
    pred = model.training_forward(batch)
    assert pred["conf_matrix"].shape == pred["conf_matrix_gt"].shape == (b, 64, 64)
    assert pred["conf_matrix_gt"].sum() == b * 64  # identity: every cell (the top-left one too, see supervision)
    n = pred["fine_query"].shape[0]
    assert n == b * 64 and pred["step1_valid"].all()
    # identity warp: query sub-position 0..3 vs the reference cell centre 1.5 -> offsets in {-1.5..1.5} / 3.5
    gt = pred["step1_offset_gt"] * 3.5
    assert set(gt.flatten().tolist()) <= {-1.5, -0.5, 0.5, 1.5}
    assert torch.allclose(pred["step2_offset_gt"] * 1.5, pred["step2_offset_gt"].mul(1.5).round())  # jitter only
    assert (pred["step2_offset_gt"].abs() <= 1 / 1.5 + 1e-6).all()
    assert pred["step1_prob"].shape == (n,) and ((pred["step1_prob"] > 0) & (pred["step1_prob"] <= 1)).all()
    loss = sum(pred[k].float().sum() for k in ("conf_matrix", "step1_offset", "step1_prob", "step2_offset"))
    loss.backward()
    unused = [k for k, p in model.named_parameters() if p.grad is None]
    assert not unused, unused[:3]


def test_settings_are_frozen_and_updated_copies():
    s = IMAMatchSettings()
    with pytest.raises(AttributeError):
        s.resize = 640
    assert s.updated(resize=640).resize == 640 and s.resize == 1216


class _FixedOutput(torch.nn.Module):
    """Stands in for the network: returns given points in network-input pixels."""

    def __init__(self, settings, kpts0, kpts1, reverse):
        super().__init__()
        self.settings, self.weight = settings, torch.nn.Parameter(torch.zeros(1))
        self.out = {"kpts0": kpts0, "kpts1": kpts1, "scores": torch.ones(len(kpts0)), "reverse": reverse}
        self.seen = None

    def forward(self, image0, image1):
        self.seen = (image0.shape, image1.shape)
        return self.out


def test_match_images_maps_back_and_drops_padding():
    from densematch.models.imamatch.inference import match_images

    settings = IMAMatchSettings(resize=128, pad_to_square=True, use_ba=True)
    kpts0 = torch.tensor([[0.0, 0.0], [127.0, 63.0], [10.0, 100.0]])  # the last one lies in image 0's padding
    kpts1 = torch.tensor([[63.5, 31.5], [0.0, 0.0], [5.0, 5.0]])
    fake = _FixedOutput(settings, kpts0, kpts1, reverse=True)
    out = match_images(fake, np.zeros((50, 100, 3), np.uint8), np.zeros((100, 50, 3), np.uint8))
    assert fake.seen == ((1, 1, 128, 128), (1, 1, 128, 128))
    # image 0: 100x50 -> 128x64 (factors 100/128, 50/64); image 1: 50x100 -> 64x128
    expected0 = (kpts0[:2] + 0.5) * torch.tensor([100 / 128, 50 / 64]) - 0.5
    expected1 = (kpts1[:2] + 0.5) * torch.tensor([50 / 64, 100 / 128]) - 0.5
    assert torch.allclose(out["kpts0"], expected0) and torch.allclose(out["kpts1"], expected1)
    assert out["reverse"] is True and out["pose_refinement"] == "ba" and out["scores"].shape == (2,)


def test_no_coarse_match_gives_an_empty_result(small_model):
    small_model.configure(coarse_threshold=0.999)
    try:
        out = small_model(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))
    finally:
        small_model.configure(coarse_threshold=0.0)
    assert out["kpts0"].shape == (0, 2) and out["scores"].shape == (0,) and out["reverse"] is False
