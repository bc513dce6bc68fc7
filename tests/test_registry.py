"""Every registered model: published weight URLs, and a build whose state dict matches the published key list."""

from __future__ import annotations

import pytest
import torch

import densematch
from densematch.registry import get_entry

# the published key list of each registered model that has one in shared/spec
SPEC = {
    "roma_outdoor": "roma_checkpoint_keys.tsv",
    "roma_indoor": "roma_checkpoint_keys.tsv",
    "l2mpp": "roma_checkpoint_keys.tsv",
    "tiny_roma_v1_outdoor": "tiny_roma_v1_keys.tsv",
}


def test_every_model_with_a_spec_is_registered():
    assert set(SPEC) <= set(densematch.list_models())


@pytest.mark.parametrize("name", sorted(SPEC))
def test_registered_model_layout(name, shared_dir):
    entry = get_entry(name)
    assert entry.weights["matcher"].url.startswith("https://")
    kwargs = {"weights": False}
    if "dinov2" in entry.weights:
        kwargs["dinov2_weights"] = False
        device = "meta"  # ViT-L without allocating it
    else:
        device = "cpu"
    model = densematch.load(name, device=device, **kwargs)
    rows = (shared_dir / "spec" / SPEC[name]).read_text().splitlines()[1:]
    expected = [(r.split("\t")[0], r.split("\t")[1]) for r in rows]
    got = [(k, "[" + ",".join(str(d) for d in v.shape) + "]") for k, v in model.state_dict().items()]
    assert got == expected
    assert callable(model.match) and callable(model.sample) and isinstance(model.symmetric, bool)


def test_tiny_roma_through_the_cli(shared_data, tmp_path):
    from densematch.cli import main

    torch.manual_seed(0)
    model = densematch.load("tiny_roma_v1_outdoor", weights=False)
    torch.save(model.state_dict(), tmp_path / "tiny.pth")
    demo = shared_data / "demo_pairs"
    out = tmp_path / "out"
    code = main(["match", str(demo / "roma_toronto_A.jpg"), str(demo / "roma_toronto_B.jpg"), "--model",
                 "tiny_roma_v1_outdoor", "--weights", str(tmp_path / "tiny.pth"), "--num", "500", "--output", str(out)])
    assert code == 0
    import numpy as np

    data = np.load(out / "matches.npz")
    width, height = data["size0"]
    assert 0 < len(data["kpts0"]) <= 500
    assert data["kpts0"].min() >= -0.5 and data["kpts0"][:, 0].max() <= width - 0.5
