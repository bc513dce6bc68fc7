"""RoMa behaviour on a small architecture: output layout, settings, registry round trip, bad input."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace

import numpy as np
import pytest
import torch
from PIL import Image

import densematch
from densematch.conventions import normalized_grid
from densematch.errors import ImageReadError, InputShapeError, UnknownModelError, WeightsError
from densematch.models.roma.config import PROJ_DIMS, RomaArchitecture
from densematch.models.roma.matcher import build_roma
from densematch.registry import MODELS

# ViT-S and narrow projections: the refiners (2 x projection + embedding + correlation channels wide) are
# ~20x narrower than published, which makes a forward pass ~10x faster on CPU; every module is still there
SMALL = RomaArchitecture(dinov2="vits14", decoder_depth=2, refiner_blocks=2,
                         proj_dims={**PROJ_DIMS, 16: (384, 64), 8: (512, 32), 4: (256, 16), 2: (128, 8)})


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = build_roma("cpu", matcher_weights=False, dinov2_weights=False, arch=SMALL)
    folder = tmp_path_factory.mktemp("weights")
    torch.save(model.state_dict(), folder / "matcher.pth")
    torch.save(model.encoder.dinov2.state_dict(), folder / "dinov2.pth")
    return folder / "matcher.pth", folder / "dinov2.pth"


@pytest.fixture(scope="module")
def small_model(small_weights):
    matcher, dinov2 = small_weights
    return densematch.roma_outdoor("cpu", weights=matcher, dinov2_weights=dinov2, coarse_res=56, upsample_res=70,
                                   arch=SMALL)


def test_symmetric_layout(small_model):
    rng = np.random.default_rng(0)
    a = Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    b = Image.fromarray(rng.integers(0, 255, (80, 60, 3), dtype=np.uint8))
    warp, cert = small_model.match(a, b)
    assert warp.shape == (1, 70, 140, 4) and cert.shape == (1, 70, 140)
    grid = normalized_grid(70, 70)
    assert torch.allclose(warp[0, :, :70, :2], grid) and torch.allclose(warp[0, :, 70:, 2:], grid)
    assert warp.abs().max() <= 1 and cert.min() >= 0 and cert.max() <= 1
    matches, certainty = small_model.sample(warp, cert, num=50, generator=torch.Generator().manual_seed(0))
    assert matches.shape[1] == 4 and len(matches) == len(certainty) <= 50
    kpts_a, kpts_b = small_model.to_pixel_coordinates(matches, 90, 120, 80, 60)
    back_a, back_b = small_model.to_normalized_coordinates((kpts_a, kpts_b), 90, 120, 80, 60)
    assert torch.allclose(torch.cat((back_a, back_b), -1), matches, atol=1e-6)


def test_batched_tensors_and_settings(small_model):
    x = torch.randn(2, 3, 56, 56)
    small_model.upsample_preds = False
    try:
        warp, cert = small_model.match(x, x.flip(0))
        assert warp.shape == (2, 56, 112, 4) and cert.shape == (2, 56, 112)
        small_model.symmetric = False
        warp, cert = small_model.match(x, x.flip(0))
        assert warp.shape == (2, 56, 56, 4)
    finally:
        small_model.upsample_preds, small_model.symmetric = True, True


def test_bad_inputs(small_model, tmp_path):
    with pytest.raises(InputShapeError, match="multiple of 14"):
        small_model.match(torch.randn(1, 3, 50, 56), torch.randn(1, 3, 50, 56))
    with pytest.raises(InputShapeError, match=r"\(B, 3, H, W\)"):
        small_model.match(torch.randn(3, 56, 56), torch.randn(3, 56, 56))
    with pytest.raises(InputShapeError, match="same shape"):
        small_model.match(torch.randn(1, 3, 56, 56), torch.randn(1, 3, 56, 70))
    with pytest.raises(ImageReadError, match="not found"):
        small_model.match(tmp_path / "missing.jpg", tmp_path / "missing.jpg")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageReadError, match="corrupt.jpg"):
        small_model.match(tmp_path / "corrupt.jpg", tmp_path / "corrupt.jpg")
    with pytest.raises(InputShapeError, match="multiple of 14"):
        small_model.h_resized = 57
    assert small_model.h_resized == 56


def test_wrong_checkpoint_and_unknown_name(small_weights, tmp_path):
    matcher, dinov2 = small_weights
    with pytest.raises(WeightsError, match="DINOv2 checkpoint does not fit"):  # ViT-S file into ViT-L
        densematch.roma_outdoor("cpu", weights=matcher, dinov2_weights=dinov2)
    torch.save({"xfeat.0.skip1.1.weight": torch.zeros(24, 1, 1, 1)}, tmp_path / "tiny.pth")
    with pytest.raises(WeightsError, match="checkpoint of another model"):
        densematch.roma_outdoor("cpu", weights=tmp_path / "tiny.pth", dinov2_weights=dinov2, arch=SMALL)
    with pytest.raises(UnknownModelError, match="roma_outdoor"):
        densematch.load("roma_outdor")


@pytest.mark.parametrize("name", [n for n, e in MODELS.items() if "dinov2" in e.weights])  # the RoMa ones
def test_registered_roma_models_build_on_meta(name, shared_dir):
    model = densematch.load(name, device="meta", weights=False, dinov2_weights=False)
    spec = (shared_dir / "spec" / "roma_checkpoint_keys.tsv").read_text().splitlines()[1:]
    assert list(model.state_dict()) == [row.split("\t")[0] for row in spec]
    assert model.get_output_resolution() == model.upsample_res


def test_l2mpp_uses_its_snapshot_numerics(small_weights):
    matcher, dinov2 = small_weights
    model = densematch.l2mpp("cpu", weights=matcher, dinov2_weights=dinov2, coarse_res=56, upsample_res=112,
                             arch=SMALL)
    assert model.settings.gp_solver == "inverse" and model.decoder.gps["16"].solver == "inverse"
    assert model._scale_factor(upsample=False) == 1.0 and model._scale_factor(upsample=True) == pytest.approx(2.0)
    roma = densematch.roma_outdoor("cpu", weights=matcher, dinov2_weights=dinov2, coarse_res=56, upsample_res=112,
                                   arch=SMALL)
    assert roma._scale_factor(upsample=False) == pytest.approx(0.1)
    assert roma._scale_factor(upsample=True) == pytest.approx(0.2)
    # the inverse and Cholesky GP solves agree closely on the same weights
    x = torch.randn(1, 3, 56, 56)
    roma.upsample_preds = model.upsample_preds = False
    with pytest.raises(FrozenInstanceError):  # settings change only through apply_settings (validated)
        model.settings.scale_factor_mode = "train_resolution"
    model.apply_settings(replace(model.settings, scale_factor_mode="train_resolution"))
    w1, c1 = roma.match(x, x.flip(-1))
    w2, c2 = model.match(x, x.flip(-1))
    assert (w1 - w2).abs().max() < 1e-3 and (c1 - c2).abs().max() < 1e-3


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_amp_close_to_fp32(small_weights, dtype):
    matcher, dinov2 = small_weights
    ref = densematch.roma_outdoor("cpu", weights=matcher, dinov2_weights=dinov2, coarse_res=112, arch=SMALL,
                                  upsample_res=168)
    gpu = densematch.roma_outdoor("cuda", weights=matcher, dinov2_weights=dinov2, coarse_res=112, arch=SMALL,
                                  upsample_res=168, amp_dtype=dtype)
    assert gpu.encoder.dinov2.cls_token.dtype == dtype
    image = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    w_ref, c_ref = ref.match(Image.fromarray(image), Image.fromarray(image[:, ::-1].copy()))
    w_gpu, c_gpu = gpu.match(Image.fromarray(image), Image.fromarray(image[:, ::-1].copy()))
    assert ((w_gpu.cpu() - w_ref).abs() < 2e-2).float().mean() > 0.95
    assert ((c_gpu.cpu() - c_ref).abs() < 5e-2).float().mean() > 0.95


def test_match_batch_equals_pair_by_pair(small_model, shared_data):
    from densematch.matchers.dense import DenseModelMatcher

    demo = shared_data / "demo_pairs"
    pairs = [(demo / "roma_sacre_coeur_A.jpg", demo / "roma_sacre_coeur_B.jpg"),
             (demo / "roma_toronto_A.jpg", demo / "roma_toronto_B.jpg")]
    warp, cert = small_model.match_batch([a for a, _ in pairs], [b for _, b in pairs])
    for i, (a, b) in enumerate(pairs):
        w1, c1 = small_model.match(a, b)
        assert torch.allclose(warp[i : i + 1], w1, atol=1e-5) and torch.allclose(cert[i : i + 1], c1, atol=1e-5)
    matcher = DenseModelMatcher(small_model, "roma_outdoor", num=200, seed=3)
    batched = matcher.match_batch(pairs)
    single = matcher.match_pair(*pairs[1])
    assert len(batched) == 2 and batched[1].size0 == single.size0
    assert np.allclose(batched[1].kpts0, single.kpts0, atol=1e-3)


def test_plain_modules_give_the_fused_fast_paths_outputs(small_model, monkeypatch):
    """match() on CPU takes oneDNN's fused kernels (folded BatchNorm, channels-last, fused linears); without
    them (a torch build lacking the private ops) the plain modules run, to the same values."""
    import densematch.backbones.fused as fused

    rng = np.random.default_rng(3)
    a = Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    b = Image.fromarray(rng.integers(0, 255, (80, 60, 3), dtype=np.uint8))
    folds = []
    folded = fused.folded
    monkeypatch.setattr(fused, "folded", lambda *args: folds.append(1) or folded(*args))
    fast = small_model.match(a, b)
    assert folds, "the fused fast path did not run"
    monkeypatch.setattr(fused, "HAS_ONEDNN_FUSED", False)
    folds.clear()
    plain = small_model.match(a, b)
    assert not folds
    for ours, theirs in zip(fast, plain, strict=True):
        torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=0)
