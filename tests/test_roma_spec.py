"""State-dict layout of RoMa / DINOv2 against the published key lists (built on the meta device)."""

from __future__ import annotations

import pytest
import torch

from densematch.backbones.dinov2 import DINOV2_CONFIGS, DinoV2
from densematch.models.roma.matcher import RoMa


def read_spec(path):
    rows = [line.rstrip("\n").split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return [(key, tuple(int(d) for d in shape.strip("[]").split(",") if d), dtype) for key, shape, dtype in rows]


def layout(module):
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in module.state_dict().items()]


def test_roma_state_dict_matches_published_keys(shared_dir):
    with torch.device("meta"):
        model = RoMa()
    assert layout(model) == read_spec(shared_dir / "spec" / "roma_checkpoint_keys.tsv")


def test_dinov2_vitl14_matches_published_keys(shared_dir):
    with torch.device("meta"):
        model = DinoV2(DINOV2_CONFIGS["vitl14"])
    assert layout(model) == read_spec(shared_dir / "spec" / "dinov2_vitl14_keys.tsv")


@pytest.mark.parametrize("name", sorted(DINOV2_CONFIGS))
def test_dinov2_configs_build_and_count(name):
    cfg = DINOV2_CONFIGS[name]
    with torch.device("meta"):
        model = DinoV2(cfg)
    blocks = {k.split(".")[1] for k in model.state_dict() if k.startswith("blocks.")}
    assert len(blocks) == cfg.depth
    assert model.pos_embed.shape == (1, 37 * 37 + 1, cfg.embed_dim)


def test_dinov2_not_in_matcher_state_but_follows_moves():
    with torch.device("meta"):
        model = RoMa()
    assert not any(k.startswith("encoder.dinov2") for k in model.state_dict())
    model = model.to_empty(device="cpu").double()
    assert model.encoder.dinov2.cls_token.dtype == torch.float64
    model.train()
    assert not model.encoder.dinov2.training and model.encoder.cnn.training
