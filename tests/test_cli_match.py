"""``densematch match`` end to end on real images (SIFT: no weights needed) and on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densematch.cli import main


def test_match_writes_matches_picture_and_summary(shared_data, tmp_path, capsys):
    boat = shared_data / "oxford_boat"
    out = tmp_path / "out"
    assert main(["match", str(boat / "img1.pgm"), str(boat / "img2.pgm"), "--model", "sift", "--num", "2000",
                 "--output", str(out)]) == 0
    data = np.load(out / "matches.npz")
    assert data["kpts0"].shape == data["kpts1"].shape and len(data["kpts0"]) > 100
    assert tuple(data["size0"]) == (850, 680)
    # the published homography maps most matches of this easy pair to within 5 px
    H = np.array(json.loads((boat / "pairs.json").read_text())["pairs"][0]["H_0to1"])
    p = np.c_[data["kpts0"], np.ones(len(data["kpts0"]))] @ H.T
    err = np.linalg.norm(p[:, :2] / p[:, 2:] - data["kpts1"], axis=1)
    assert np.mean(err < 5) > 0.8
    assert (out / "matches.png").stat().st_size > 1000
    assert json.loads((out / "summary.json").read_text())["num_matches"] == len(data["kpts0"])
    assert "[3/3]" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing.jpg", "missing.jpg", "--model", "sift"], "image file not found: missing.jpg"),
        (["IMG", "IMG", "--model", "no_such_model"], "unknown model 'no_such_model'"),
    ],
)
def test_bad_input_is_a_clear_error(shared_data, tmp_path, capsys, argv, message):
    img = str(shared_data / "oxford_boat" / "img1.pgm")
    argv = [img if a == "IMG" else a for a in argv]
    assert main(["match", *argv, "--output", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "matches.npz").exists()


def test_corrupt_image(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main(["match", str(bad), str(bad), "--model", "sift", "--output", str(tmp_path / "o")]) == 2
    assert "cannot read image" in capsys.readouterr().err
