"""Tiny RoMa v1: checkpoint layout, strict loading, input handling, and parity with upstream romatch 0.1.2.

Parity: the same random weights (BatchNorm statistics randomised, refiner outputs scaled so that every
part matters) and inputs go through upstream ``TinyRoMa`` in the reference venv
(shared/tools/romatch-oracle.sh, one subprocess for the whole module) and through ours; warp and
certainty must agree to 1e-4 on at least 99.9 % of values on CPU fp32. Those tests skip when the venv
cannot be built or ../shared is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fraction_close, run_oracle
from PIL import Image

from densematch.conventions import normalized_grid
from densematch.errors import ImageReadError, InputShapeError, WeightsError
from densematch.models.roma.tiny import TinyRoMa, TinyRomaSettings, build_tiny_roma
from densematch.weights import cache_dir

NAME = "tiny_roma_v1_outdoor"


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: these ops are small, and two threads on a busy 2-core machine run many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_state(seed: int = 0) -> dict:
    """Random Tiny RoMa weights whose every part changes the output.

    BatchNorm running statistics are randomised (they are the only normalisation parameters), and the
    refiners' output convs are scaled up so that their displacements are pixels (not tenths) and their
    certainty logits span a few units (certainties from about 0 to 0.9).
    """
    torch.manual_seed(seed)
    state = build_tiny_roma(weights=False).state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.normal_(0, 0.1)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 2.0)
    for prefix, gain in (("coarse_matcher.4", 40.0), ("fine_matcher.4", 20.0)):
        state[f"{prefix}.weight"].mul_(gain)
        state[f"{prefix}.bias"].mul_(gain)
        state[f"{prefix}.weight"][2].mul_(5.0)  # certainty channel
    return state


@pytest.fixture(scope="module")
def state() -> dict:
    return random_state()


@pytest.fixture(scope="module")
def model(state) -> TinyRoMa:
    return build_tiny_roma(weights=state)


# --- parity with upstream ---------------------------------------------------------------------------
def _parity_cases(demo: Path) -> dict:
    g = torch.Generator().manual_seed(1)
    sacre_a, sacre_b = str(demo / "roma_sacre_coeur_A.jpg"), str(demo / "roma_sacre_coeur_B.jpg")
    return {
        "square_280": {"A": torch.rand(1, 3, 280, 280, generator=g),
                       "B": torch.rand(1, 3, 280, 280, generator=g), "kind": "tensor"},
        "nonsquare_sizes_differ": {"A": torch.rand(1, 3, 200, 330, generator=g),
                                   "B": torch.rand(1, 3, 240, 320, generator=g), "kind": "tensor"},
        "grey_exact_softmax": {"A": torch.rand(1, 1, 160, 224, generator=g),
                               "B": torch.rand(1, 1, 160, 224, generator=g), "kind": "tensor",
                               "exact_softmax": True},
        "path": {"A": sacre_a, "B": sacre_b, "kind": "path"},
        "pil": {"A": sacre_b, "B": sacre_a, "kind": "pil"},
    }


@pytest.fixture(scope="module")
def reference(oracle_python, shared_data, state, tmp_path_factory) -> dict:
    """Upstream outputs for every parity case, from one run of tests/oracle/tiny_ref.py."""
    cases = _parity_cases(shared_data / "demo_pairs")
    spec = {"weights": state, "cases": list(cases.values())}
    results = run_oracle(oracle_python, "tiny_ref.py", spec, tmp_path_factory.mktemp("tiny_oracle"))["results"]
    return {name: (case, result) for (name, case), result in zip(cases.items(), results, strict=True)}


def _ours(model: TinyRoMa, case: dict):
    a, b = case["A"], case["B"]
    if case["kind"] == "pil":
        a, b = Image.open(a), Image.open(b)
    model.exact_softmax = case.get("exact_softmax", False)
    try:
        return model.match(a, b)
    finally:
        model.exact_softmax = False


PARITY_CASES = ["square_280", "nonsquare_sizes_differ", "grey_exact_softmax", "path", "pil"]


@pytest.mark.parametrize("name", PARITY_CASES)
def test_parity_with_upstream(reference, model, name):
    case, ref = reference[name]
    warp, certainty = _ours(model, case)
    # the shape upstream returns for this input type: (B, H, W, 4) for tensors, (H, W, 4) for path / PIL
    assert list(warp.shape) == ref["warp_shape"] and list(certainty.shape) == ref["certainty_shape"]
    assert warp.dim() == (4 if case["kind"] == "tensor" else 3)
    assert fraction_close(warp, ref["warp"]) >= 0.999, (warp - ref["warp"]).abs().max()
    assert fraction_close(certainty, ref["certainty"]) >= 0.999, (certainty - ref["certainty"]).abs().max()
    assert certainty.std() > 0.05  # the comparison is meaningful: certainty is far from constant


# --- checkpoint layout and strict loading -------------------------------------------------------------
def test_state_dict_matches_published_key_list(shared_dir):
    rows = (shared_dir / "spec" / "tiny_roma_v1_keys.tsv").read_text().strip().splitlines()[1:]
    expected = {}
    for row in rows:
        key, shape, dtype = row.split("\t")
        expected[key] = (tuple(int(s) for s in shape.strip("[]").split(",") if s), dtype)
    ours = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in
            build_tiny_roma(weights=False).state_dict().items()}
    assert len(expected) == 112
    assert ours == expected


def test_parameter_count_and_no_affine_batchnorm():
    model = build_tiny_roma(weights=False)
    assert sum(p.numel() for p in model.parameters()) == 2_842_490
    assert not any(k.endswith("layer.1.weight") for k in model.state_dict())


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.pop("fine_matcher.2.layer.0.weight"), "fine_matcher.2.layer.0.weight"),
    (lambda s: s.__setitem__("xfeat.0.heatmap_head.2.weight", torch.zeros(1, 64, 1, 1)),
     "xfeat.0.heatmap_head.2.weight"),
    (lambda s: s.__setitem__("coarse_matcher.4.bias", torch.zeros(4)), "coarse_matcher.4.bias"),
])
def test_strict_loading_names_the_bad_key(state, edit, needle):
    broken = dict(state)
    edit(broken)
    with pytest.raises(WeightsError, match=needle.replace(".", r"\.")):
        build_tiny_roma(weights=broken)


def test_num_batches_tracked_may_be_absent_and_paths_load(state, model, tmp_path):
    stripped = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(stripped) == 112 - 26
    torch.save(stripped, tmp_path / "tiny.pth")
    loaded = build_tiny_roma(weights=tmp_path / "tiny.pth")
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    for ours, theirs in zip(loaded.match(x, x.flip(-1)), model.match(x, x.flip(-1)), strict=True):
        assert torch.equal(ours, theirs)
    with pytest.raises(WeightsError, match="not found"):
        build_tiny_roma(weights=tmp_path / "missing.pth")


def test_builder_rejects_unknown_arguments():
    with pytest.raises(TypeError, match="xfeat"):
        build_tiny_roma(weights=False, xfeat=object())
    with pytest.raises(TypeError, match="coarse_res"):
        build_tiny_roma(weights=False, coarse_res=560)
    with pytest.raises(ValueError, match="sample_mode"):
        build_tiny_roma(weights=False, sample_mode="random")


def test_published_weights_load_strictly_when_cached():
    path = cache_dir() / f"{NAME}.pth"
    if not path.is_file():
        pytest.skip(f"published checkpoint not cached at {path}")
    import densematch

    model = densematch.tiny_roma_v1_outdoor(weights=str(path))
    warp, certainty = model.match(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    assert warp.shape == (1, 64, 64, 4) and torch.isfinite(certainty).all()


# --- numerics -------------------------------------------------------------------------------------------
def _approximate_warp_reference(corr: np.ndarray, stride: int = 4) -> np.ndarray:
    """Upstream's approximate softmax written out per A cell in float64. corr: (h1, w1, n) -> (2, n)."""
    h1, w1, n = corr.shape
    xs = -1 + (2 * np.arange(w1) + 1) / w1
    ys = -1 + (2 * np.arange(h1) + 1) / h1
    lx = np.linspace(-1 + stride / w1, 1 - stride / w1, w1 // stride)
    ly = np.linspace(-1 + stride / h1, 1 - stride / h1, h1 // stride)
    out = np.zeros((2, n))
    for i in range(n):
        c = corr[:, :, i]
        best = int(np.argmax(c))  # row-major flat index
        logits = np.concatenate([c[::stride, ::stride].reshape(-1), [float(best)]])
        p = np.exp(logits - logits.max())
        p /= p.sum()
        gy, gx = np.meshgrid(ly, lx, indexing="ij")
        out[0, i] = (p[:-1] * gx.reshape(-1)).sum() + p[-1] * xs[best % w1]
        out[1, i] = (p[:-1] * gy.reshape(-1)).sum() + p[-1] * ys[best // w1]
    return out


@pytest.mark.parametrize("chunk", [0, 7])
def test_coarse_warp_matches_a_direct_computation(model, chunk):
    g = torch.Generator().manual_seed(5)
    feat_a, feat_b = torch.randn(1, 64, 3, 5, generator=g), torch.randn(1, 64, 8, 12, generator=g) * 3
    model.settings = TinyRomaSettings(coarse_chunk=chunk)
    try:
        warp = model.coarse_warp(feat_a, feat_b)
    finally:
        model.settings = TinyRomaSettings()
    corr = np.einsum("ci,cj->ji", feat_a[0].reshape(64, -1).double().numpy(),
                     feat_b[0].reshape(64, -1).double().numpy()) / 8.0
    expected = _approximate_warp_reference(corr.reshape(8, 12, 15))
    np.testing.assert_allclose(warp[0].reshape(2, -1).numpy(), expected, atol=1e-5)


def test_exact_softmax_of_a_peaked_volume_is_the_peak_cell_centre(model):
    feat_b = torch.eye(64)[:48].T.reshape(1, 64, 6, 8) * 100  # B cell k has feature 100 e_k
    cells = torch.tensor([0, 13, 47])
    feat_a = torch.eye(64)[cells].T.reshape(1, 64, 1, 3) * 100  # A cell i looks exactly like B cell cells[i]
    model.exact_softmax = True
    try:
        warp = model.coarse_warp(feat_a, feat_b)[0, :, 0].T
    finally:
        model.exact_softmax = False
    centres = normalized_grid(6, 8).reshape(-1, 2)[cells]
    torch.testing.assert_close(warp, centres, atol=1e-6, rtol=0)


def test_matches_outside_image_b_are_kept_unclamped_with_their_certainty(state):
    shifted = {k: v.clone() for k, v in state.items()}
    shifted["fine_matcher.4.bias"][0] += 100.0  # every match moves 100 px right in B (64 px wide)
    a, b = torch.rand(2, 1, 3, 64, 64)
    warp, certainty = build_tiny_roma(weights=shifted).match(a, b)
    outside = warp[..., 2] > 1
    assert outside.float().mean() > 0.9
    assert warp[..., 2].max() > 3 and (certainty[outside] > 0).all()


def test_batched_match_equals_pairwise_match(model):
    g = torch.Generator().manual_seed(7)
    a, b = torch.rand(3, 3, 96, 128, generator=g), torch.rand(3, 3, 96, 128, generator=g)
    warp, certainty = model.match(a, b)
    for i in range(3):
        w_i, c_i = model.match(a[i : i + 1], b[i : i + 1])
        torch.testing.assert_close(warp[i : i + 1], w_i, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(certainty[i : i + 1], c_i, atol=1e-5, rtol=1e-5)


# --- the match() contract ------------------------------------------------------------------------------
def test_match_output_contract(model):
    assert torch.get_num_threads() == 1
    g = torch.Generator().manual_seed(9)
    a, b = torch.rand(2, 3, 70, 100, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    warp, certainty = model.match(a, b)
    assert warp.shape == (2, 70, 100, 4) and certainty.shape == (2, 70, 100)
    assert torch.equal(warp[..., :2], normalized_grid(70, 100)[None].expand(2, 70, 100, 2))
    assert ((certainty >= 0) & (certainty <= 1)).all()
    single_warp, single_cert = model.match(a[:1], b[:1], batched=False)
    assert single_warp.shape == (70, 100, 4) and single_cert.shape == (70, 100)
    assert model.symmetric is False and model.kde_stride == 8


def test_match_accepts_paths_pil_and_greyscale_files(model, tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (72, 90, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels[::-1].copy()).convert("L").save(tmp_path / "b.png")
    warp, certainty = model.match(tmp_path / "a.png", str(tmp_path / "b.png"))
    assert warp.shape == (72, 90, 4) and certainty.shape == (72, 90)  # unbatched, as upstream for paths
    assert model.match(tmp_path / "a.png", tmp_path / "b.png", batched=True)[0].shape == (72, 90, 4)
    from_pil = model.match(Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png").convert("RGB"))
    assert torch.equal(from_pil[0], warp) and torch.equal(from_pil[1], certainty)


@pytest.mark.parametrize("a, b, error, needle", [
    (torch.rand(1, 3, 64, 64), "x.png", InputShapeError, "both images as tensors"),
    (torch.rand(3, 64, 64), torch.rand(3, 64, 64), InputShapeError, "im_A must be a"),
    (torch.rand(1, 4, 64, 64), torch.rand(1, 3, 64, 64), InputShapeError, "got shape"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), torch.rand(1, 3, 64, 64), InputShapeError,
     "floating-point"),
    (torch.rand(2, 3, 64, 64), torch.rand(1, 3, 64, 64), InputShapeError, "same batch size"),
    (torch.rand(1, 3, 31, 64), torch.rand(1, 3, 64, 64), InputShapeError, "at least 32x32"),
    ("/nonexistent/a.png", "/nonexistent/b.png", ImageReadError, "not found"),
])
def test_bad_input_gives_clear_errors(model, a, b, error, needle):
    with pytest.raises(error, match=needle):
        model.match(a, b)


def test_dense_matcher_adapter_on_real_images(state, shared_data):
    from densematch.matchers import get_matcher

    matcher = get_matcher(NAME, weights=state, num=300)
    demo = shared_data / "demo_pairs"
    matches = matcher.match_pair(demo / "roma_sacre_coeur_A.jpg", demo / "roma_sacre_coeur_B.jpg")
    assert 0 < len(matches) <= 300 and matches.size0 == (640, 480) and matches.size1 == (618, 640)
    field = matcher.match_dense(demo / "roma_sacre_coeur_A.jpg", demo / "roma_sacre_coeur_B.jpg")
    assert field.warp.shape == (480, 640, 2) and field.certainty.shape == (480, 640)


def test_sample_defaults_to_5000_balanced_matches(model):
    g = torch.Generator().manual_seed(11)
    a, b = torch.rand(2, 1, 3, 96, 128, generator=g)
    warp, certainty = model.match(a, b)
    sampled, scores = model.sample(warp, certainty, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (5000, 4) and scores.shape == (5000,)
    rows = {tuple(r) for r in sampled.tolist()}
    assert len(rows) == 5000  # without replacement
    assert rows <= {tuple(r) for r in warp.reshape(-1, 4).tolist()}


@pytest.mark.parametrize("freeze_xfeat", [False, True])
def test_training_mode_backpropagates_into_the_backbone_unless_frozen(freeze_xfeat):
    torch.manual_seed(0)
    model = build_tiny_roma(weights=False, freeze_xfeat=freeze_xfeat).train()
    corresps = model({"im_A": torch.rand(2, 3, 64, 64), "im_B": torch.rand(2, 3, 64, 64)})
    (corresps[4]["flow"].square().mean() + corresps[8]["certainty"].mean()).backward()
    assert model.coarse_matcher[0].layer[0].weight.grad.abs().sum() > 0
    backbone_grad = model.xfeat[0].block1[0].layer[0].weight.grad
    assert (backbone_grad is None) == freeze_xfeat


def test_folded_batchnorm_matches_the_plain_layers_and_follows_weight_changes(state):
    """match() folds each eval BatchNorm into its conv (cached); the cache must follow new weights."""
    from densematch.backbones.xfeat import BasicLayer

    g = torch.Generator().manual_seed(13)
    a, b = torch.rand(2, 1, 3, 96, 128, generator=g)
    model = build_tiny_roma(weights=False)
    model.match(a, b)  # fills the caches with the random initial weights
    model.load_state_dict(state)
    folded = model.match(a, b)
    layers = [m for m in model.modules() if isinstance(m, BasicLayer)]
    assert layers and all(m.fold_batchnorm for m in layers)
    for m in layers:
        m.fold_batchnorm = False
    plain = model.match(a, b)
    for ours, theirs in zip(folded, plain, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert not any(m.layer[0].__dict__.get("_fused_cache") is None for m in layers)  # caches were used, not state
    assert sorted(model.state_dict()) == sorted(state)


def test_public_conv_fallback_gives_the_same_outputs(state, monkeypatch):
    """Without torch's private fused / im2col kernels the public conv path runs, to the same values."""
    import densematch.backbones.xfeat as xfeat_module

    g = torch.Generator().manual_seed(14)
    a, b = torch.rand(2, 1, 3, 96, 128, generator=g)
    model = build_tiny_roma(weights=state)
    fast = model.match(a, b)
    monkeypatch.setattr(xfeat_module, "_HAS_FUSED_CONV", False)
    monkeypatch.setattr(xfeat_module, "_HAS_IM2COL_CONV", False)
    for ours, fallback in zip(fast, model.match(a, b), strict=True):
        torch.testing.assert_close(ours, fallback, atol=1e-5, rtol=0)
