"""Every registered model meets the model contract of its kind (densematch.models.contract)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

import densematch
from densematch.errors import ConfigError, UnknownModelError
from densematch.matchers import PairMatcher, get_matcher
from densematch.matchers.correspondences import CorrespondenceMatcher
from densematch.matchers.dense import DenseModelMatcher
from densematch.models.contract import KINDS, InputSpec, TrainingRecipe, prepare_images
from densematch.registry import MODELS, get_entry

LEARNED = [name for name, entry in sorted(MODELS.items()) if entry.kind != "classical"]


def build_untrained(name: str):
    """The registered model with random weights (meta device where a frozen ViT-L would be allocated)."""
    entry = get_entry(name)
    kwargs = {"weights": False}
    device = "cpu"
    if "dinov2" in entry.weights:
        kwargs["dinov2_weights"] = False
        device = "meta"
    return densematch.load(name, device=device, **kwargs)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_entry_declares_a_known_kind_and_a_resolvable_recipe(name):
    entry = get_entry(name)
    assert entry.kind in KINDS
    if entry.recipe is None:
        with pytest.raises(UnknownModelError, match="cannot be trained"):
            entry.training_recipe()
        return
    recipe = entry.training_recipe()
    assert isinstance(recipe, TrainingRecipe)
    module_name, func = recipe.loss.split(":")
    assert callable(getattr(importlib.import_module(module_name), func))
    assert {"image0", "image1"}.isdisjoint(recipe.targets) and recipe.targets
    assert all(group.lr_per_8 > 0 for group in recipe.groups)


@pytest.mark.parametrize("name", LEARNED)
def test_learned_model_declares_input_and_training_forward(name):
    model = build_untrained(name)
    assert isinstance(model.input_spec, InputSpec)
    assert callable(model.training_forward)
    assert model.kind == get_entry(name).kind
    if model.kind == "dense":
        assert callable(model.match) and callable(model.sample)
    else:
        assert callable(model.match_images)


@pytest.mark.parametrize("name", [n for n in LEARNED if get_entry(n).recipe is not None])
def test_loss_of_every_trainable_model_builds_for_every_source_kind(name):
    from densematch.train.sources import KINDS as SOURCE_KINDS

    recipe = get_entry(name).training_recipe()
    for kind in SOURCE_KINDS:
        loss = recipe.build_loss(kind, None)
        assert isinstance(loss, torch.nn.Module)


def test_prepare_images_grey_and_imagenet():
    rgb = torch.rand(2, 3, 4, 5)
    grey = prepare_images(rgb, InputSpec("grey", "unit", 8))
    assert grey.shape == (2, 1, 4, 5)
    expected = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert torch.allclose(grey[:, 0], expected)
    normalised = prepare_images(rgb, InputSpec("rgb", "imagenet", 14))
    assert torch.allclose(normalised[:, 0], (rgb[:, 0] - 0.485) / 0.229, atol=1e-6)
    with pytest.raises(ValueError, match="grey"):
        InputSpec("gray", "unit", 8)
    with pytest.raises(ValueError, match="RGB"):
        prepare_images(torch.rand(2, 1, 4, 4), InputSpec("grey", "unit", 8))


def test_get_matcher_wraps_by_kind():
    assert isinstance(get_matcher("sift"), PairMatcher) and get_matcher("sift", num=100).max_keypoints == 100
    tiny = get_matcher("tiny_roma_v1_outdoor", weights=False)
    assert isinstance(tiny, DenseModelMatcher) and tiny.num == 5000
    with pytest.raises(ConfigError, match="no weights"):
        get_matcher("sift", weights="x.pth")
    with pytest.raises(ConfigError, match="unknown option"):
        get_matcher("sift", coarse_res=280)
    with pytest.raises(ConfigError, match="num"):
        get_matcher("sift", num=0)
    with pytest.raises(UnknownModelError, match="registered models"):
        get_matcher("no_such_model")


class _FakeMatches(torch.nn.Module):
    """A ``matches``-kind model returning fixed correspondences with an extra field."""

    kind = "matches"

    def match_images(self, image0, image1):
        kpts = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        return {"kpts0": kpts, "kpts1": kpts + 1, "scores": torch.tensor([0.2, 0.9, 0.5]),
                "reverse": torch.tensor(True)}


def test_correspondence_adapter_keeps_best_and_extras():
    image = np.zeros((8, 10, 3), np.uint8)
    matches = CorrespondenceMatcher(_FakeMatches(), name="fake", num=2).match_pair(image, image)
    assert len(matches) == 2 and matches.size0 == (10, 8)
    np.testing.assert_allclose(matches.kpts0, [[3, 4], [5, 6]])  # the two best, in the model's order
    np.testing.assert_allclose(matches.kpts1 - matches.kpts0, 1)
    assert matches.info == {"reverse": True}
    assert len(CorrespondenceMatcher(_FakeMatches(), name="fake").match_pair(image, image)) == 3
