"""The synthetic pair datasets yield the pair-sample format with a consistent warp."""

from __future__ import annotations

import pytest
import torch
from test_synth_engine import make_images

from densematch.conventions import normalized_to_pixel
from densematch.data.synthetic import SyntheticPairs, SyntheticPairStream
from densematch.synth.engine import SynthConfig, SynthEngine
from densematch.synth.folder import run_folder
from densematch.synth.prior import ProceduralDepth
from densematch.synth.render import sample_image

RES = 48
KEYS = {
    "image0": (3, RES, RES),
    "image1": (3, RES, RES),
    "warp0": (RES, RES, 2),
    "valid0": (RES, RES),
    "K0": (3, 3),
    "K1": (3, 3),
    "T_0to1": (4, 4),
    "depth0": (RES, RES),
    "depth1": (RES, RES),
}


def check_sample(sample):
    assert set(sample) == set(KEYS)
    for key, shape in KEYS.items():
        assert tuple(sample[key].shape) == shape, key
    assert sample["valid0"].dtype == torch.bool and sample["image0"].dtype == torch.float32
    assert 0 <= sample["image1"].min() and sample["image1"].max() <= 1
    valid = sample["valid0"]
    assert valid.any()
    assert (sample["warp0"][valid].abs() <= 1).all()


def test_folder_dataset(tmp_path):
    images = make_images(tmp_path / "images", count=2)
    config = SynthConfig(resolution=RES, pairs_per_image=2, relight=None)
    run_folder(SynthEngine(config, ProceduralDepth()), images, tmp_path / "out", progress=False)
    dataset = SyntheticPairs(tmp_path / "out")
    assert len(dataset) == 4
    sample = dataset[1]
    check_sample(sample)
    # image1 at warp0 shows image0's colour (no relighting here)
    uv1 = normalized_to_pixel(sample["warp0"], RES, RES)
    colour = sample_image(sample["image1"], uv1)
    error = (colour - sample["image0"]).abs().amax(0)[sample["valid0"]]
    assert error.median() < 0.03
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch["image0"].shape == (2, 3, RES, RES)


def test_on_the_fly_stream(tmp_path):
    images = make_images(tmp_path / "images", count=2)
    stream = SyntheticPairStream(images, resolution=RES, pairs_per_image=3)
    assert len(stream) == 6
    first = stream[4]
    check_sample(first)
    assert torch.equal(first["image1"], stream[4]["image1"])  # deterministic
    stream.set_epoch(1)
    assert not torch.equal(first["T_0to1"], stream[4]["T_0to1"])


def test_stream_skips_unusable_images(tmp_path):
    images = make_images(tmp_path / "images", count=2)
    (images / "img0.png").write_bytes(b"broken")
    stream = SyntheticPairStream(sorted(images.iterdir()), resolution=RES)
    with pytest.warns(RuntimeWarning, match="img0.png"):
        sample = stream[0]
    check_sample(sample)
