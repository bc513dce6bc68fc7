"""tiny_roma_l2m: the embedded offline default, its frozen official-XFeat initialisation, the default wiring."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
import torch

import densematch
from densematch.backbones.xfeat import XFeatBackbone
from densematch.errors import WeightsError
from densematch.models.roma.tiny_l2m import embedded_weights, tiny_roma_l2m
from densematch.registry import DEFAULT_MODEL, get_entry
from densematch.weights import file_sha256


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _pair(height=128, width=160, shift=(7, 5), seed=0):
    """A smooth random texture and the same texture shifted by ``shift`` = (dx, dy) pixels."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(height // 4 + 4, width // 4 + 4, 3)).astype(np.float32)
    big = torch.nn.functional.interpolate(torch.from_numpy(base).permute(2, 0, 1)[None], scale_factor=4,
                                          mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    big = np.clip(big, 0, 255).astype(np.uint8)
    dx, dy = shift
    return big[8 : 8 + height, 8 : 8 + width].copy(), big[8 + dy : 8 + dy + height, 8 + dx : 8 + dx + width].copy()


def test_default_model_resolves_offline_and_tiny_roma_l2m_is_embedded(no_network):
    from densematch.weights import cached_file

    assert DEFAULT_MODEL in densematch.list_models()
    default = get_entry(DEFAULT_MODEL).weights["matcher"]
    assert file_sha256(cached_file(default, what=DEFAULT_MODEL, download=False)) == default.sha256
    spec = get_entry("tiny_roma_l2m").weights["matcher"]
    path = embedded_weights()
    assert spec.sha256 is not None and file_sha256(path) == spec.sha256
    assert path.stat().st_size < 20 * 2**20  # a few MB inside the package


def test_embedded_checkpoint_is_strict_and_frozen(no_network):
    model = tiny_roma_l2m()
    state = torch.load(embedded_weights(), weights_only=True)
    assert set(state) == set(model.state_dict())
    model.train()
    assert not model.xfeat.training and model.coarse_matcher.training  # frozen BN statistics stay fixed
    assert model.settings.freeze_xfeat


def test_training_starts_from_the_given_xfeat_weights():
    reference = XFeatBackbone()
    for param in reference.parameters():
        torch.nn.init.normal_(param)
    official = {**reference.state_dict(), "heatmap_head.0.layer.0.weight": torch.zeros(1)}  # heads ignored
    model = tiny_roma_l2m(weights=False, xfeat_weights=official)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.xfeat[0].state_dict()[key], value)
    with pytest.raises(WeightsError, match="lack"):
        tiny_roma_l2m(weights=False, xfeat_weights={"skip1.1.weight": torch.zeros(24, 1, 1, 1)})


def test_training_recipe_freezes_xfeat():
    from densematch.train.config import get_recipe
    from densematch.train.run import freeze

    recipe = get_recipe("tiny_roma_l2m")
    model = tiny_roma_l2m(weights=False, xfeat_weights=False)
    freeze(model, recipe.frozen)
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"coarse_matcher", "fine_matcher"}


def test_default_matcher_recovers_a_shift_offline(no_network):
    image0, image1 = _pair(shift=(6, 4))
    matches = densematch.get_matcher(num=500).match_pair(image0, image1)  # no name: the default model
    assert len(matches) > 100
    offset = np.median(matches.kpts0 - matches.kpts1, axis=0)  # image1 = image0 moved by (-dx, -dy)
    assert np.allclose(offset, (6, 4), atol=1.0)


def test_match_command_without_model_runs_offline(no_network, tmp_path, capsys):
    from PIL import Image

    from densematch.cli import main

    image0, image1 = _pair(seed=1)
    Image.fromarray(image0).save(tmp_path / "a.png")
    Image.fromarray(image1).save(tmp_path / "b.png")
    out = tmp_path / "out"
    assert main(["match", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--num", "300", "--output", str(out)]) == 0
    assert str(out.resolve()) in capsys.readouterr().out  # says where the outputs are
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == DEFAULT_MODEL and summary["num_matches"] > 0
    data = np.load(out / "matches.npz")
    assert data["kpts0"].shape == data["kpts1"].shape and len(data["kpts0"]) <= 300
