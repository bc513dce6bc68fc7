"""The command line as a newcomer meets it: --version, --help without torch, `models`, and one-line errors
(non-zero exit, no traceback, nothing written) for every bad argument, found before any slow work."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from densematch.cli import main
from densematch.cli.common import parse_options
from densematch.registry import MODELS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-c", "\n".join(code)], capture_output=True, text=True, env=env,
                          timeout=120)


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("densematch 0.1.0")


def test_help_and_the_package_import_do_not_load_torch():
    done = _run("import sys, densematch, densematch.cli as cli",
                "cli.build_parser()",
                "print(sorted(m for m in ('torch', 'numpy', 'cv2', 'h5py') if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    done = _run("import densematch; print(densematch.list_models()[:1], callable(densematch.get_matcher))")
    assert done.returncode == 0 and "True" in done.stdout  # the lazy names still resolve


def test_models_lists_every_registered_model_with_its_weights_status(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = next(entry for entry in MODELS.values() if entry.weights)
    spec = next(iter(cached.weights.values()))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / spec.file_name).write_bytes(b"")
    assert main(["models", "--json"]) == 0
    listed = {model["name"]: model for model in json.loads(capsys.readouterr().out)}
    assert set(MODELS) <= set(listed) and "sift" in listed
    for name, entry in MODELS.items():
        assert listed[name]["kind"] == entry.kind
        roles = {w["role"]: w for w in listed[name]["weights"]}
        for role, file in entry.weights.items():
            expected = "cached" if file.file_name == spec.file_name else "needs download"
            assert roles[role]["status"] == expected, (name, role)
            where = str(tmp_path / "hub" / "checkpoints" / file.file_name) if expected == "cached" else file.url
            assert roles[role]["where"] == where
    assert listed["sift"]["weights"][0]["status"] == "none needed"
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in MODELS) and "cached" in table


def test_options_are_parsed_as_json_with_names_checked():
    assert parse_options(["ratio=0.9", "mutual=True", "name=x", "size=[1, 2]"]) == {
        "ratio": 0.9, "mutual": True, "name": "x", "size": [1, 2]}
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_options(["no-equals"])


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths


BAD_MATCH_ARGS = [
    (["--model", "sift", "--coarse-res", "280"], "model 'sift' rejects --coarse-res (= coarse_res): unknown option"),
    (["--model", "tiny_roma_v1_outdoor", "--option", "foo=2"], "rejects --option foo: unknown argument(s)"),
    (["--model", "sift", "--option", "coarse_res=280"], "model 'sift' rejects --option coarse_res"),
    (["--model", "sift", "--matcher-option", "bogus=1"], "rejects --option bogus"),  # old alias
    (["--model", "sift", "--weights", "x.pth"], "'sift' matcher has no weights"),
    (["--model", "sift", "--device", "gpu7"], "invalid --device 'gpu7'"),
    (["--model", "no_such_model"], "unknown model 'no_such_model'"),
    (["--model", "tiny_roma_v1_outdoor", "--dinov2-weights", "d.pth"], "has no dinov2 weights"),
    (["--model", "roma_outdoor", "--weights", "missing_a.pth", "--dinov2-weights", "missing_b.pth"],
     "2 weight file(s) missing: --weights missing_a.pth: file not found; --dinov2-weights missing_b.pth"),
    (["--model", "sift", "--threshold", "0"], "--threshold must be positive"),
]


@pytest.mark.parametrize("argv, message", BAD_MATCH_ARGS)
def test_match_errors_are_one_line_and_write_nothing(pair, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main(["match", *pair, *argv, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_invalid_cuda_device_without_cuda(pair, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is valid here")
    assert main(["match", *pair, "--model", "sift", "--device", "cuda", "--output", str(tmp_path / "o")]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err


@pytest.mark.parametrize("num", ["0", "-3"])
def test_counts_must_be_positive(pair, tmp_path, capsys, num):
    with pytest.raises(SystemExit) as done:
        main(["match", *pair, "--model", "sift", "--num", num, "--output", str(tmp_path / "o")])
    assert done.value.code == 2 and f"must be at least 1, got {num}" in capsys.readouterr().err


def test_output_must_not_be_an_existing_file(pair, tmp_path, capsys):
    for command in (["match", *pair, "--model", "sift"], ["benchmark", str(tmp_path), "--model", "sift"],
                    ["synth", str(tmp_path)], ["pairs", str(tmp_path), "--exhaustive"]):
        assert main([*command, "--output", pair[0]]) == 2, command
        assert "is an existing file" in capsys.readouterr().err


def test_model_options_are_checked_before_the_benchmark_is_read(tmp_path, capsys):
    # the folder does not exist either: the option is what is reported, before any file is read
    assert main(["benchmark", str(tmp_path / "nowhere"), "--model", "sift", "--option", "bogus=1",
                 "--output", str(tmp_path / "o")]) == 2
    assert "rejects --option bogus" in capsys.readouterr().err


def test_reconstruct_rejects_bad_camera_options_before_work(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "images").mkdir()
    base = ["reconstruct", str(tmp_path / "run"), "--images", str(tmp_path / "images"), "--output",
            str(tmp_path / "sfm")]
    assert main([*base, "--camera-model", "PINHOLEX"]) == 2
    assert "unknown COLMAP camera model 'PINHOLEX'" in capsys.readouterr().err
    assert main([*base, "--camera-model", "PINHOLE", "--camera-params", "500,320,240"]) == 2
    assert "takes 4 parameters (fx, fy, cx, cy), got 3" in capsys.readouterr().err
    assert main([*base, "--camera-model", "SIMPLE_PINHOLE", "--camera-params", "f,1,2"]) == 2
    assert "comma-separated numbers" in capsys.readouterr().err
    assert not (tmp_path / "sfm").exists()


def test_train_takes_model_flag_and_validates_device(tmp_path, capsys):
    common = ["--data", str(tmp_path), "--steps", "1", "--output", str(tmp_path / "t")]
    assert main(["train", "--model", "no_such_model", *common, "--device", "nonsense"]) == 2
    assert "invalid --device 'nonsense'" in capsys.readouterr().err
    assert main(["train", "tiny_roma_v1_outdoor", "--model", "roma_outdoor", *common]) == 2
    assert "two models given" in capsys.readouterr().err


def test_match_pairs_skips_an_unreadable_image_unless_strict(tmp_path, capsys):
    from sfm_synthetic import make_collection

    images = tmp_path / "images"
    make_collection(images, count=3)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main(["pairs", str(images), "--exhaustive", "--output", str(tmp_path / "run")]) == 0
    base = ["match-pairs", str(images), "--pairs", str(tmp_path / "run"), "--model", "sift", "--num", "300",
            "--quiet"]
    assert main([*base, "--output", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "3 pairs (3 new" in out and "skipped 1 unreadable image(s) and their 3 pair(s)" in out
    assert "broken.png" in out
    assert main([*base, "--output", str(tmp_path / "strict"), "--strict"]) == 2
    assert "broken.png" in capsys.readouterr().err
    assert not (tmp_path / "strict" / "matches.h5").exists()


def test_atomic_writes_respect_the_umask(tmp_path):
    from densematch.io import atomic_path, atomic_write, make_temp_folder

    previous = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "a.txt", "w") as handle:
            handle.write("x")
        with atomic_path(tmp_path / "b.npy") as tmp:
            np.save(tmp, np.zeros(2))
        folder = make_temp_folder(tmp_path, ".t")
    finally:
        os.umask(previous)
    for path, mode in ((tmp_path / "a.txt", 0o640), (tmp_path / "b.npy", 0o640), (folder, 0o750)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
