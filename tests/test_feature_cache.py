"""Per-image features across pairs: the cache itself, and the models that split their work per image (RoMa:
network inputs + DINOv2 map; Tiny RoMa: XFeat features; S2LD: backbone, keypoints, coarse features) give
exactly what matching each pair does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import test_roma_model
import torch
import torch.nn.functional as F
from PIL import Image

from densematch.errors import ImageReadError, InputShapeError
from densematch.io import image_size
from densematch.matchers.correspondences import CorrespondenceMatcher
from densematch.matchers.dense import DenseModelMatcher
from densematch.matchers.feature_cache import FeatureCache, splits_per_image
from densematch.models.roma.tiny import build_tiny_roma
from densematch.models.s2ld import s2ld

small_weights = test_roma_model.small_weights  # the small RoMa (random weights) at coarse 56 / upsample 70
roma = test_roma_model.small_model


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_tiny_roma(weights=False)


def _images(sizes) -> list[Image.Image]:
    rng = np.random.default_rng(5)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


# --- the cache --------------------------------------------------------------------------------------
def test_cache_extracts_each_image_once_and_evicts_least_recently_used(tmp_path):
    images = _images([(8, 8)] * 3)
    paths = []
    for i, image in enumerate(images):
        image.save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    calls = []

    def extract(image):
        calls.append(image)  # the image as given: a path stays a path
        return len(calls)

    cache = FeatureCache(2)
    assert cache.get(paths[0], extract) == ((8, 8), 1)
    assert cache.get(str(paths[0]), extract) == ((8, 8), 1)  # the same path, as str or Path
    cache.get(paths[1], extract)
    cache.get(paths[0], extract)  # 0 is now the most recent: adding 2 evicts 1
    cache.get(paths[2], extract)
    assert len(cache) == 2 and calls == [paths[0], paths[1], paths[2]]
    assert cache.get(paths[0], extract)[1] == 1
    assert cache.get(paths[1], extract)[1] == 4  # evicted, extracted again
    assert cache.get(images[0], extract)[1] == 5 and cache.get(images[0], extract)[1] == 5  # objects by identity
    none = FeatureCache(0)
    none.get(images[0], extract), none.get(images[0], extract)
    assert len(none) == 0 and len(calls) == 7


def test_an_image_object_is_never_confused_with_a_later_one_at_the_same_address():
    cache = FeatureCache(4)
    first = _images([(8, 8)])[0]
    cache.get(first, lambda image: "first")
    key = id(first)
    other = Image.new("RGB", (4, 4))
    cache._entries[id(other)] = cache._entries.pop(key)  # as if ``other`` had been allocated at first's address
    assert cache.get(other, lambda image: "other") == ((4, 4), "other")


def test_image_size_reads_the_header_and_names_a_bad_file(tmp_path):
    Image.new("RGB", (37, 21)).save(tmp_path / "a.jpg")
    assert image_size(tmp_path / "a.jpg") == (37, 21) == image_size(str(tmp_path / "a.jpg"))
    assert image_size(np.zeros((21, 37, 3), np.uint8)) == (37, 21) == image_size(Image.new("L", (37, 21)))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        image_size(tmp_path / "bad.jpg")
    with pytest.raises(ImageReadError, match="not found"):
        FeatureCache(4).get(tmp_path / "missing.png", lambda image: pytest.fail("extract ran"))


# --- the dense models ---------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["roma", "tiny"])
def test_dense_matcher_encodes_each_image_once_with_the_results_of_match(which, request, monkeypatch):
    model = request.getfixturevalue(which)
    assert splits_per_image(model)
    images = _images([(64, 96), (64, 96), (80, 72)])  # two of one size (batched together by match), one other
    pairs = [(0, 1), (0, 2), (1, 2), (2, 0)]
    matcher = DenseModelMatcher(model, which, num=50, seed=2)
    uncached = DenseModelMatcher(model, which, num=50, seed=2, feature_cache=0)
    calls = []
    extract = model.extract
    monkeypatch.setattr(model, "extract", lambda image: calls.append(image.size) or extract(image))
    for i, j in pairs:
        size0, size1, warp, certainty = matcher._run(images[i], images[j])
        direct_warp, direct_certainty = model.match(images[i], images[j])
        if direct_warp.dim() == 3:
            direct_warp, direct_certainty = direct_warp[None], direct_certainty[None]
        assert (size0, size1) == (images[i].size, images[j].size)
        torch.testing.assert_close(warp, direct_warp, atol=1e-6, rtol=0)
        torch.testing.assert_close(certainty, direct_certainty, atol=1e-6, rtol=0)
        cached, plain = matcher.match_pair(images[i], images[j]), uncached.match_pair(images[i], images[j])
        np.testing.assert_allclose(cached.kpts0, plain.kpts0, atol=1e-3)
        np.testing.assert_allclose(cached.kpts1, plain.kpts1, atol=1e-3)
    assert len(calls) == 3 + 2 * len(pairs)  # 3 for the cached matcher, every time for the uncached one


def test_roma_encoder_runs_dinov2_once_per_image(roma):
    images = _images([(64, 96)] * 3)
    seen = []
    hook = roma.encoder.dinov2.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    try:
        matcher = DenseModelMatcher(roma, "roma", num=50)
        for i, j in [(0, 1), (0, 2), (1, 2)]:
            matcher.match_pair(images[i], images[j])
        assert sum(seen) == 3
        seen.clear()
        roma.match(images[0], images[1])
        assert sum(seen) == 2  # without the cache: both images of every pair
    finally:
        hook.remove()


def test_roma_batched_features_equal_pair_by_pair(roma):
    images = _images([(64, 96), (50, 70), (80, 72)])
    features = [roma.extract(image) for image in images]
    warp, certainty = roma.match_features(roma.stack_features(features[:2]), roma.stack_features(features[1:]))
    for k, (i, j) in enumerate([(0, 1), (1, 2)]):
        single_warp, single_certainty = roma.match_features(features[i], features[j])
        torch.testing.assert_close(warp[k : k + 1], single_warp, atol=1e-5, rtol=0)
        torch.testing.assert_close(certainty[k : k + 1], single_certainty, atol=1e-5, rtol=0)


def test_roma_rejects_features_of_other_settings_or_unequal_batches(roma):
    a, b = (roma.extract(image) for image in _images([(64, 96), (50, 70)]))
    other = replace(a, coarse=F.interpolate(a.coarse, size=(70, 70)))
    with pytest.raises(InputShapeError, match="other settings"):
        roma.match_features(other, b)
    with pytest.raises(InputShapeError, match="different lengths"):
        roma.match_features(roma.stack_features([a, a]), b)


# --- semi-dense: S2LD (backbone, keypoints and coarse features per image) ----------------------------------
def test_s2ld_matcher_extracts_each_image_once_with_the_matches_of_match_images(shared_data, monkeypatch):
    torch.manual_seed(0)
    model = s2ld(weights=False, resize=320, coarse_threshold=0.0)  # random weights: every mutual match (few)
    assert splits_per_image(model)
    demo = shared_data / "demo_pairs"
    # files read as S2LD reads them (OpenCV grey); two of one size (one backbone pass in match_images)
    paths = [demo / "roma_toronto_A.jpg", demo / "roma_toronto_B.jpg", demo / "roma_sacre_coeur_A.jpg"]
    matcher = CorrespondenceMatcher(model, "s2ld")
    calls = []
    extract = model.extract
    monkeypatch.setattr(model, "extract", lambda image: calls.append(image) or extract(image))
    for i, j in [(0, 1), (0, 2), (1, 2), (2, 0), (1, 0)]:  # the later pairs reuse features already matched
        cached = matcher.match_pair(paths[i], paths[j])
        direct = model.match_images(paths[i], paths[j])
        assert len(cached.kpts0) == len(direct["kpts0"]) > 0
        np.testing.assert_allclose(cached.kpts0, direct["kpts0"].numpy(), atol=1e-3)
        np.testing.assert_allclose(cached.kpts1, direct["kpts1"].numpy(), atol=1e-3)
        np.testing.assert_allclose(cached.scores, direct["scores"].numpy(), atol=1e-5)
        np.testing.assert_allclose(cached.info["keypoint_scores"], direct["keypoint_scores"].numpy(), atol=1e-5)
        assert (cached.size0, cached.size1) == (Image.open(paths[i]).size, Image.open(paths[j]).size)
    assert calls == paths  # each image once, as given (paths)


def test_s2ld_per_image_encoding_equals_the_paired_pass():
    torch.manual_seed(0)
    model = s2ld(weights=False, resize=None)
    images = torch.rand(2, 1, 1, 96, 128)
    with torch.inference_mode():
        paired = model.encode(images[0], images[1])
        joined = model.join_encoded(model.encode_image(images[0]), model.encode_image(images[1]))
    assert joined.keys() == paired.keys()
    for key, value in paired.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(joined[key], value, atol=1e-5, rtol=0, msg=key)
        else:
            assert joined[key] == value, key
