"""The engine end to end: output format, exact GT in the written files, determinism, resume, bad input."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from densematch.cli import main
from densematch.geometry.warps import warp_from_depth
from densematch.synth import store
from densematch.synth.depth import FolderDepth
from densematch.synth.engine import SynthConfig, SynthEngine
from densematch.synth.folder import run_folder
from densematch.synth.prior import ProceduralDepth
from densematch.synth.render import sample_image

RES = 64


def make_images(folder, count=3, size=(90, 70)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        base = cv2.resize(
            rng.integers(0, 255, (9, 12, 3), dtype=np.uint8), size, interpolation=cv2.INTER_CUBIC
        )
        cv2.imwrite(str(folder / f"img{i}.png"), base)
    return folder


@pytest.fixture
def config():
    return SynthConfig(resolution=RES, pairs_per_image=2, seed=3)


def load_pair(root, entry):
    image0 = cv2.cvtColor(cv2.imread(str(root / entry["image0"])), cv2.COLOR_BGR2RGB)
    image1 = cv2.cvtColor(cv2.imread(str(root / entry["image1"])), cv2.COLOR_BGR2RGB)
    valid0 = cv2.imread(str(root / entry["valid0"]), cv2.IMREAD_GRAYSCALE) > 0
    depth0, depth1 = np.load(root / entry["depth0"]), np.load(root / entry["depth1"])
    return image0, image1, valid0, depth0, depth1


def test_output_format_and_exact_ground_truth(tmp_path, config):
    images = make_images(tmp_path / "images")
    engine = SynthEngine(replace(config, relight=None), ProceduralDepth())
    summary = run_folder(engine, images, tmp_path / "out", progress=False)
    assert summary.written == 6 and not summary.failures
    index = json.loads((tmp_path / "out" / "pairs.json").read_text())
    assert index["type"] == "relative_pose" and len(index["pairs"]) == 6
    for entry in index["pairs"]:
        for key in ("image0", "image1", "size0", "size1", "K0", "K1", "T_0to1", "depth0", "depth1", "valid0"):
            assert key in entry
        assert entry["size0"] == [RES, RES]
        image0, image1, valid0, depth0, depth1 = load_pair(tmp_path / "out", entry)
        assert depth0.dtype == np.float32 and depth0.shape == (RES, RES)
        assert valid0.mean() > config.min_valid_fraction
        # the benchmark's GT warp: image1 at warp_from_depth(depth0, K0, K1, T_0to1) shows image0's colour
        K0, K1, T = (torch.tensor(entry[k], dtype=torch.float32) for k in ("K0", "K1", "T_0to1"))
        uv1, ok = warp_from_depth(torch.from_numpy(depth0), K0, K1, T)
        valid = torch.from_numpy(valid0)
        assert not (valid & ~ok).any()
        looked_up = sample_image(torch.from_numpy(image1).permute(2, 0, 1).float(), uv1)
        error = (looked_up - torch.from_numpy(image0).permute(2, 0, 1).float()).abs().amax(0)[valid]
        assert error.float().median() <= 6  # a smooth random texture, bilinear resampling + uint8 rounding
        # holes carry no depth
        hole1 = cv2.imread(str(tmp_path / "out" / entry["hole1"]), cv2.IMREAD_GRAYSCALE) > 0
        assert (depth1[hole1] == 0).all()


def test_deterministic_for_a_seed(tmp_path, config):
    images = make_images(tmp_path / "images", count=1)
    image = cv2.cvtColor(cv2.imread(str(images / "img0.png")), cv2.COLOR_BGR2RGB)
    first = SynthEngine(config, ProceduralDepth()).pairs_for_image("img0", image)
    second = SynthEngine(config, ProceduralDepth()).pairs_for_image("img0", image)
    other = SynthEngine(replace(config, seed=4), ProceduralDepth()).pairs_for_image("img0", image)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.image1, b.image1) and np.array_equal(a.T_0to1, b.T_0to1)
        assert np.array_equal(a.valid0, b.valid0) and np.array_equal(a.depth1, b.depth1)
    assert not np.array_equal(first[0].T_0to1, other[0].T_0to1)
    assert not np.array_equal(first[0].T_0to1, first[1].T_0to1)  # pairs of an image differ
    # pair 1 alone equals pair 1 of the full run (order independence, needed for resuming)
    alone = SynthEngine(config, ProceduralDepth()).pairs_for_image("img0", image, indices=[1])[0]
    assert np.array_equal(alone.image1, first[1].image1)


def test_resume_skips_complete_pairs_and_interrupts_leave_no_partial_pair(tmp_path, config, monkeypatch):
    images = make_images(tmp_path / "images")
    out = tmp_path / "out"
    engine = SynthEngine(config, ProceduralDepth())
    run_folder(engine, images, out, progress=False)
    reference = (out / "pairs" / "img1_001" / "image1.png").read_bytes()
    import shutil

    shutil.rmtree(out / "pairs" / "img1_001")
    summary = run_folder(engine, images, out, progress=False)
    assert summary.written == 1 and summary.skipped == 5
    assert (out / "pairs" / "img1_001" / "image1.png").read_bytes() == reference

    # interrupt while writing the third pair: no half-written pair folder, a valid pairs.json
    shutil.rmtree(out)
    calls = {"n": 0}
    original = store.np.save

    def failing_save(path, array):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        original(path, array)

    monkeypatch.setattr(store.np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        run_folder(engine, images, out, progress=False)
    monkeypatch.setattr(store.np, "save", original)
    folders = sorted(p.name for p in (out / "pairs").iterdir())
    assert folders == ["img0_000", "img0_001"]
    assert len(json.loads((out / "pairs.json").read_text())["pairs"]) == 2
    summary = run_folder(engine, images, out, progress=False)
    assert summary.written == 4 and summary.skipped == 2


def test_parallel_workers_write_the_same_pairs(tmp_path, config):
    images = make_images(tmp_path / "images", count=3)
    engine = SynthEngine(replace(config, pairs_per_image=1), ProceduralDepth())
    run_folder(engine, images, tmp_path / "one", progress=False)
    summary = run_folder(engine, images, tmp_path / "two", progress=False, workers=2)
    assert summary.written == 3
    for pid in ("img0_000", "img1_000", "img2_000"):
        for name in ("image1.png", "depth1.npy", "valid0.png"):
            assert (tmp_path / "one/pairs" / pid / name).read_bytes() == (
                tmp_path / "two/pairs" / pid / name
            ).read_bytes()


def test_bad_input_is_reported_and_skipped(tmp_path, config):
    images = make_images(tmp_path / "images", count=3)
    (images / "broken.jpg").write_bytes(b"not an image")
    depth = tmp_path / "depth"
    depth.mkdir()
    np.save(depth / "img0.npy", np.tile(np.linspace(1, 2, 90, dtype=np.float32), (70, 1)))  # good
    np.save(depth / "img1.npy", np.ones((10, 10), np.float32))  # wrong size
    np.save(depth / "img2.npy", np.zeros((70, 90), np.float32))  # all unknown
    engine = SynthEngine(config, FolderDepth(depth, kind="depth"))
    summary = run_folder(engine, images, tmp_path / "out", progress=False)
    assert summary.written == 2
    assert set(summary.failures) == {"broken.jpg", "img1.png", "img2.png"}
    assert "10x10" in summary.failures["img1.png"]
    assert "unknown" in summary.failures["img2.png"]
    recorded = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert set(recorded) == set(summary.failures)
    assert sorted(p.name for p in (tmp_path / "out" / "pairs").iterdir()) == ["img0_000", "img0_001"]


def test_cli_synth(tmp_path, capsys):
    images = make_images(tmp_path / "images", count=2)
    depth = tmp_path / "disp"
    depth.mkdir()
    for i in range(2):  # 16-bit disparity PNGs
        disparity = np.tile(np.linspace(1000, 60000, 90), (70, 1)).astype(np.uint16)
        cv2.imwrite(str(depth / f"img{i}.png"), disparity)
    command = ["synth", str(images), "--output", str(tmp_path / "out"), "--depth", str(depth)]
    command += ["--resolution", "48", "--quiet"]
    assert main(command) == 0
    assert "wrote 2 pairs" in capsys.readouterr().out
    index = json.loads((tmp_path / "out" / "pairs.json").read_text())
    assert [p["size0"] for p in index["pairs"]] == [[48, 48], [48, 48]]
    code = main(command)
    assert code == 0 and "wrote 0 pairs (2 already present)" in capsys.readouterr().out


@pytest.mark.parametrize("module, flag, path", [("onnxruntime", "--sky-model", "sky.onnx"),
                                                 ("transformers", "--depth-model", "depth_model")])
def test_cli_reports_missing_optional_dependencies(tmp_path, capsys, monkeypatch, module, flag, path):
    images = make_images(tmp_path / "images", count=1)
    (tmp_path / "depth_model").mkdir()
    (tmp_path / "sky.onnx").write_bytes(b"")
    monkeypatch.setitem(sys.modules, module, None)  # `import module` fails, installed or not
    code = main(["synth", str(images), "-o", str(tmp_path / "out"), flag, str(tmp_path / path), "--quiet"])
    assert code == 2 and f"'{module}'" in capsys.readouterr().err
    code = main(["synth", str(images), "-o", str(tmp_path / "out"), flag, str(tmp_path / "absent"), "--quiet"])
    assert code == 2 and f"{flag}: not found" in capsys.readouterr().err


def test_sky_gets_unknown_depth_but_is_rendered(tmp_path, config):
    images = make_images(tmp_path / "images", count=1)
    image = cv2.cvtColor(cv2.imread(str(images / "img0.png")), cv2.COLOR_BGR2RGB)

    def top_is_sky(prepared):
        mask = np.zeros(prepared.shape[:2], bool)
        mask[:16] = True
        return mask

    engine = SynthEngine(replace(config, relight=None, inpaint=False), ProceduralDepth(), sky=top_is_sky)
    pair = engine.pairs_for_image("img0", image, indices=[0])[0]
    assert (pair.depth0[:16] == 0).all() and not pair.valid0[:16].any()
    sky_in_view1 = (pair.depth1 == 0) & ~pair.hole1
    assert sky_in_view1.sum() > 0  # sky pixels are rendered (far away), not holes, and carry no depth
