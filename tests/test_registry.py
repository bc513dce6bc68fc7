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
    "s2ld": "s2ld_keys.tsv",
    "tiny_roma_l2m": "tiny_roma_v1_keys.tsv",  # same network, trained here
}


def test_every_model_with_a_spec_is_registered():
    assert set(SPEC) <= set(densematch.list_models())


@pytest.mark.parametrize("name", sorted(SPEC))
def test_registered_model_layout(name, shared_dir):
    entry = get_entry(name)
    assert entry.weights["matcher"].url.startswith(("https://", "package:"))  # published or embedded
    kwargs = {"weights": False}
    if "xfeat" in entry.weights:
        kwargs["xfeat_weights"] = False  # random backbone: the layout is what is checked
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
    if entry.kind == "matches":
        assert callable(model.match_images) and callable(model.training_forward)
    else:
        assert callable(model.match) and callable(model.sample) and isinstance(model.symmetric, bool)


def test_tiny_roma_through_the_cli(shared_data, tmp_path):
    from densematch.cli import main

    torch.manual_seed(0)
    model = densematch.load("tiny_roma_v1_outdoor", weights=False)
    torch.save(model.state_dict(), tmp_path / "tiny.pth")
    from PIL import Image

    demo = shared_data / "demo_pairs"
    for name in ("roma_toronto_A.jpg", "roma_toronto_B.jpg"):  # 2040x1530: 160 s on CPU; 320 px wide: 2 s
        image = Image.open(demo / name)
        image.resize((320, round(320 * image.height / image.width)), Image.Resampling.BOX).save(tmp_path / name)
    out = tmp_path / "out"
    code = main(["match", str(tmp_path / "roma_toronto_A.jpg"), str(tmp_path / "roma_toronto_B.jpg"), "--model",
                 "tiny_roma_v1_outdoor", "--weights", str(tmp_path / "tiny.pth"), "--num", "500", "--output", str(out)])
    assert code == 0
    assert (out / "dense.png").stat().st_size > 1000  # dense models also get the warp / certainty picture
    import numpy as np

    data = np.load(out / "matches.npz")
    width, height = data["size0"]
    assert 0 < len(data["kpts0"]) <= 500
    assert data["kpts0"].min() >= -0.5 and data["kpts0"][:, 0].max() <= width - 0.5
