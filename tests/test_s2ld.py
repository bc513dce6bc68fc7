"""S2LD: checkpoint layout, weight loading and its errors, input errors, image-level matching, training path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densematch.errors import ImageReadError, InputShapeError, WeightsError
from densematch.models.s2ld import S2LD, s2ld
from densematch.models.s2ld.config import InferenceConfig, ScoreFilter
from densematch.models.s2ld.inference import (
    network_size,
    prepare,
    read_grey,
    score_filter_mask,
    select,
    to_given,
)
from densematch.registry import get_entry

DRIVE = "https://drive.google.com/drive/folders/1HwvPc3AzmjwxDsmBFIkWJmRdfF68_Hvw"


def read_spec(path):
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return [(key, tuple(int(d) for d in shape.strip("[]").split(",") if d), dtype) for key, shape, dtype in rows]


def test_state_dict_matches_published_keys(shared_dir):
    with torch.device("meta"):
        model = S2LD()
    got = [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()]
    assert got == read_spec(shared_dir / "spec" / "s2ld_keys.tsv")


@pytest.fixture(scope="module")
def random_state():
    torch.manual_seed(0)
    return s2ld(weights=False).state_dict()


def test_registry_entry_names_the_drive_folder():
    entry = get_entry("s2ld")
    assert entry.kind == "matches" and DRIVE in entry.weights_note and "--weights" in entry.weights_note
    assert entry.weights["matcher"].file_name == "s2ld-e2e-inference.pt"


def test_missing_published_weights_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="s2ld-e2e-inference.pt") as info:
        s2ld()
    assert DRIVE in str(info.value) and "--weights PATH" in str(info.value)


def test_loads_pt_and_lightning_ckpt(random_state, tmp_path):
    torch.save(random_state, tmp_path / "s2ld.pt")
    lightning = {"epoch": 3, "state_dict": {f"matcher.{k}": v for k, v in random_state.items()}}
    torch.save(lightning, tmp_path / "s2ld.ckpt")
    for name in ("s2ld.pt", "s2ld.ckpt"):
        loaded = s2ld(weights=tmp_path / name).state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in random_state.items())
    assert not s2ld(weights=random_state).training


def test_wrong_checkpoint_is_a_clear_error(random_state, tmp_path):
    bad = dict(random_state)
    bad.pop("s2ld_fine.layers.1.norm2.bias")
    bad["coarse_matching.bin_score"] = torch.tensor(1.0)
    with pytest.raises(WeightsError, match="missing key.*s2ld_fine.layers.1.norm2.bias.*unexpected"):
        s2ld(weights=bad)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read S2LD weights"):
        s2ld(weights=tmp_path / "junk.pt")


def test_input_errors(random_state, tmp_path):
    model = s2ld(weights=random_state, resize=None)
    with pytest.raises(InputShapeError, match="multiples of 8"):
        model(torch.rand(1, 1, 60, 64), torch.rand(1, 1, 64, 64))
    with pytest.raises(InputShapeError, match="coarse grid"):
        model(torch.rand(1, 1, 32, 64), torch.rand(1, 1, 64, 64))
    with pytest.raises(InputShapeError, match="grey"):
        model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    with pytest.raises(InputShapeError, match="coarse grid"):
        model.match_images(np.zeros((30, 200), np.uint8), np.zeros((64, 64), np.uint8))
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ImageReadError, match="corrupt.jpg"):
        model.match_images(tmp_path / "corrupt.jpg", np.zeros((64, 64), np.uint8))
    with pytest.raises(ImageReadError, match="not found"):
        model.match_images(tmp_path / "missing.png", np.zeros((64, 64), np.uint8))


def test_resizing_rules():
    assert network_size(1296, 968, 640) == (640, 472)  # 968 * 640 / 1296 = 478.0 -> floored to 472
    assert network_size(640, 480, 640) == (640, 480)
    assert network_size(650, 330, None) == (648, 328)
    grey = (np.arange(480 * 640) % 251).astype(np.uint8).reshape(480, 640)
    image, mask, size = prepare(grey, 640, False, "cpu", "x")
    assert size == (640, 480) and mask is None
    assert torch.equal(image[0, 0], torch.from_numpy(grey).float() / 255.0)  # already that size: not resampled
    image, mask, _ = prepare(grey, 640, True, "cpu", "x")
    assert image.shape == (1, 1, 640, 640) and mask.shape == (1, 80, 80) and mask.sum() == 80 * 60
    torch.testing.assert_close(to_given(torch.tensor([[0.0, 0.0], [319.0, 239.0]]), (320, 240), (640, 480)),
                               torch.tensor([[0.5, 0.5], [638.5, 478.5]]))


def test_grey_reading_matches_opencv(shared_data):
    import cv2
    from PIL import Image

    path = shared_data / "demo_pairs" / "roma_toronto_A.jpg"
    grey = read_grey(path)
    assert grey.dtype == np.uint8 and np.array_equal(grey, cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(read_grey(rgb), read_grey(Image.fromarray(rgb)))
    assert np.abs(read_grey(rgb).astype(int) - grey.astype(int)).mean() < 2  # decoders differ by rounding only


def test_score_filter_lowers_its_threshold():
    scores = torch.tensor([1.0] * 5 + [0.15] * 200)
    keep, normalised = score_filter_mask(scores, ScoreFilter(0.2, 0.1, 100))
    assert keep.sum() == 205  # 5 matches >= 0.2 are too few: the threshold drops to 0.1
    torch.testing.assert_close(normalised, scores / (1.0 + 1e-5))
    keep, _ = score_filter_mask(torch.linspace(0, 1, 1000), ScoreFilter(0.2, 0.1, 100))
    assert keep.sum() == (torch.linspace(0, 1, 1000) / (1 + 1e-5) >= 0.2).sum()


def test_match_images_maps_network_matches_back(random_state, shared_data):
    model = s2ld(weights=random_state, resize=160, coarse_threshold=0.0)
    pair = shared_data / "demo_pairs"
    a, b = pair / "roma_toronto_A.jpg", pair / "roma_toronto_B.jpg"
    out = model.match_images(a, b)
    g0, g1 = read_grey(a), read_grey(b)
    t0, _, s0 = prepare(g0, 160, False, "cpu", "a")
    t1, _, s1 = prepare(g1, 160, False, "cpu", "b")
    with torch.inference_mode():
        net = model(t0, t1)
    assert len(out["kpts0"]) == len(net["mkpts0_f"]) > 0
    torch.testing.assert_close(out["kpts0"], to_given(net["mkpts0_f"], s0, g0.shape[::-1]))
    torch.testing.assert_close(out["kpts1"], to_given(net["mkpts1_f"], s1, g1.shape[::-1]))
    assert out["kpts0"].dtype == torch.float32 and out["scores"].shape == out["keypoint_scores"].shape
    assert (out["kpts0"] >= -5).all() and (out["kpts0"][:, 0] <= g0.shape[1] + 5).all()


def test_match_filters():
    n = 50
    g = torch.Generator().manual_seed(0)
    out = {"mkpts0_f": torch.rand(n, 2, generator=g) * 100, "mkpts1_f": torch.rand(n, 2, generator=g) * 100,
           "mconf": torch.rand(n, generator=g), "mscore": torch.rand(n, generator=g)}
    cfg = InferenceConfig(min_keypoint_score=0.2, min_confidence=0.1, border_margin=5, max_matches=7)
    got = select(out, cfg, (100, 100), (100, 100))
    keep = (out["mscore"] > 0.2) & (out["mconf"] > 0.1)
    for pts in (out["mkpts0_f"], out["mkpts1_f"]):
        keep &= ((pts >= 5) & (pts <= 94)).all(1)
    expected = out["mconf"][keep].sort(descending=True).values[:7]
    assert keep.sum() > 7 and torch.equal(got["scores"], expected)
    assert select(out, InferenceConfig(), (100, 100), (100, 100))["kpts0"].shape == (n, 2)


def test_training_path_with_synthetic_ground_truth(random_state):
    """Training mode: predictions subsampled and padded with given GT ids; gradients reach the detector."""
    model = s2ld(weights=random_state, coarse_threshold=0.0).train()
    torch.manual_seed(0)
    image = torch.rand(1, 1, 64, 64)
    data = model.encode(image, image.flip(-1))
    gt = {"spv_b_ids": torch.zeros(6, dtype=torch.long), "spv_i_ids": torch.arange(9, 15),
          "spv_j_ids": torch.arange(9, 15)}
    out = model.match_encoded(data, ground_truth=gt, generator=torch.Generator().manual_seed(0))
    n = len(out["b_ids"])
    assert n == int(64 * model.config.coarse_matching.train_coarse_percent) and out["gt_mask"].any()
    assert out["mkpts1_f_p"].shape == (n, 2) and out["expec_f"].shape == (n, 3)
    assert len(out["mkpts0_f"]) == int((~out["gt_mask"]).sum())
    loss = out["expec_f"][:, :2].square().sum() + out["conf_matrix"].sum() + out["kps0_i_all"].sum()
    loss.backward()
    assert model.keypoint_detector.k_regressor[2][0].weight.grad.abs().sum() > 0
    assert model.fine_preprocess.merge_feat.weight.grad.abs().sum() > 0


def test_no_coarse_match_gives_empty_outputs(random_state):
    model = s2ld(weights=random_state, coarse_threshold=0.999, score_filter=True, resize=None)
    with torch.inference_mode():
        out = model(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))
    assert out["mkpts0_f"].shape == (0, 2) and out["mkpts1_f"].shape == (0, 2) and out["expec_f"].shape == (0, 3)
    result = model.match_images(np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8))
    assert result["kpts0"].shape == (0, 2) and result["scores"].shape == (0,)
