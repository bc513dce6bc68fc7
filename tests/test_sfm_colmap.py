"""COLMAP reconstruction from match-pairs output, and the whole CLI chain on real images."""

from __future__ import annotations

import json

import numpy as np
import pycolmap
import pytest
from PIL import Image
from sfm_synthetic import make_corner_scene
from test_sfm_matching import QUIET

from densematch.cli import main
from densematch.errors import DensematchError, ImageReadError
from densematch.sfm import h5io
from densematch.sfm.colmap import pairs_in_matches, reconstruct
from densematch.sfm.matching import match_collection
from densematch.sfm.pairs import pairs_exhaustive
from densematch.sfm.workers import MatcherSpec


def _angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def _rotation(image) -> np.ndarray:
    return image.cam_from_world().rotation.matrix()


def _run_chain(images, pairs, out, sfm, match_options=(), reconstruct_options=()) -> None:
    """``densematch pairs --exhaustive``, ``match-pairs --model sift``, ``reconstruct --threads 1``."""
    assert main(["pairs", str(images), "--exhaustive", "--output", str(pairs)]) == 0
    match = ["match-pairs", str(images), "--pairs", str(pairs), "--model", "sift", "--output", str(out)]
    assert main([*match, "--quiet", *match_options]) == 0
    rebuild = ["reconstruct", str(out), "--images", str(images), "--output", str(sfm), "--threads", "1"]
    assert main([*rebuild, *reconstruct_options]) == 0  # one thread: COLMAP is repeatable


def test_cli_chain_on_a_synthetic_scene_recovers_poses_and_focal(tmp_path):
    views = make_corner_scene(tmp_path / "images", count=6)  # known K, R, t; non-planar
    images, pairs, out, sfm = tmp_path / "images", tmp_path / "pairs", tmp_path / "out", tmp_path / "sfm"
    _run_chain(images, pairs, out, sfm, ["--num", "2000"], ["--camera-mode", "single"])

    summary = json.loads((sfm / "summary.json").read_text())
    model = pycolmap.Reconstruction(sfm)
    assert summary["num_registered_images"] == model.num_reg_images() == len(views)
    assert summary["num_points3D"] == model.num_points3D() > 500
    assert summary["registered_images"] == sorted(views)
    assert 0 < summary["mean_reprojection_error"] < 0.5
    # the same model as COLMAP text files and as a PLY point cloud
    text = pycolmap.Reconstruction(sfm / "text")
    assert text.num_reg_images() == model.num_reg_images() and text.num_points3D() == model.num_points3D()
    header = (sfm / "points3D.ply").read_bytes()[:400].decode("ascii", "replace")
    assert f"element vertex {model.num_points3D()}" in header
    (camera,) = model.cameras.values()
    focal = views["corner_00.png"][0][0, 0]
    assert abs(camera.params[0] - focal) < 0.01 * focal

    by_name = {image.name: image for image in model.images.values()}
    names = sorted(views)
    for a, b in zip(names[:-1], names[1:], strict=True):
        R_ba_model = _rotation(by_name[b]) @ _rotation(by_name[a]).T
        R_ba_true = views[b][1] @ views[a][1].T
        assert _angle_deg(R_ba_model.T @ R_ba_true) < 0.2

    # keypoints went into COLMAP with +0.5 (its pixel corner is (0, 0)), exactly as hloc imports them
    keypoints = h5io.read_features(out / "features.h5", names[0]).keypoints
    xy = np.array([point.xy for point in by_name[names[0]].points2D])
    np.testing.assert_allclose(xy, keypoints.astype(np.float64) + 0.5, atol=1e-4)
    with pycolmap.Database.open(sfm / "database.db") as db:
        stored = db.read_keypoints(db.read_image_with_name(names[0]).image_id)
    np.testing.assert_allclose(stored[:, :2], keypoints + 0.5, atol=1e-4)


def _downscaled_copy(source, target, side: int) -> None:
    target.mkdir(parents=True)
    for path in sorted(source.glob("*.jpg")):
        image = Image.open(path)
        scale = side / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        image.resize(size, Image.Resampling.BOX).save(target / path.name, quality=95)


@pytest.mark.slow  # 28-35 s: SIFT on 10 images and COLMAP mapping
def test_cli_chain_on_sacre_coeur_at_small_size(shared_data, tmp_path):
    images = tmp_path / "images"
    _downscaled_copy(shared_data / "multiview_sacre_coeur" / "images", images, side=640)
    pairs, out, sfm = tmp_path / "pairs", tmp_path / "out", tmp_path / "sfm"
    _run_chain(images, pairs, out, sfm, ["--num", "4000"])
    summary = json.loads((sfm / "summary.json").read_text())
    model = pycolmap.Reconstruction(sfm)
    assert summary["num_input_images"] == 10
    assert summary["num_registered_images"] == model.num_reg_images() >= 8
    assert summary["num_points3D"] == model.num_points3D() > 100
    assert summary["mean_reprojection_error"] == pytest.approx(model.compute_mean_reprojection_error())
    assert summary["mean_reprojection_error"] < 1.0


@pytest.mark.slow
def test_sift_exhaustive_on_sacre_coeur_registers_at_least_9_of_10(shared_data, tmp_path):
    images = shared_data / "multiview_sacre_coeur" / "images"
    pairs, out, sfm = tmp_path / "pairs", tmp_path / "out", tmp_path / "sfm"
    _run_chain(images, pairs, out, sfm)  # default SIFT settings: 8192 keypoints, RootSIFT, mutual
    summary = json.loads((sfm / "summary.json").read_text())
    assert summary["num_input_images"] == 10
    assert summary["num_registered_images"] >= 9
    assert summary["mean_reprojection_error"] < 1.5


def _small_match_dir(tmp_path, size=(96, 64)):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8)).save(images / name)
    match_collection(
        images, pairs_exhaustive(["a.png", "b.png"]), tmp_path / "out", MatcherSpec("sift"), QUIET
    )
    return images, tmp_path / "out"


def test_reconstruct_reports_bad_input_clearly(tmp_path):
    images, out = _small_match_dir(tmp_path)
    with pytest.raises(DensematchError, match="run densematch match-pairs first"):
        reconstruct(tmp_path / "absent", images, tmp_path / "sfm")
    with pytest.raises(ImageReadError, match="image folder not found"):
        reconstruct(out, tmp_path / "absent", tmp_path / "sfm")
    other = tmp_path / "other"
    other.mkdir()
    for name in ("a.png", "b.png"):  # same names, other size: the wrong image folder
        Image.new("L", (50, 40)).save(other / name)
    with pytest.raises(DensematchError, match="wrong --images folder"):
        reconstruct(out, other, tmp_path / "sfm")
    (other / "b.png").unlink()
    with pytest.raises(ImageReadError, match="could not read 1 image"):
        reconstruct(out, other, tmp_path / "sfm")
    assert not (tmp_path / "sfm" / "database.db").exists()  # never a half-built database


def test_reconstruction_failure_is_reported_in_summary_and_exit_code(tmp_path, capsys):
    images, out = _small_match_dir(tmp_path)  # random noise: nothing to reconstruct
    (tmp_path / "sfm").mkdir()
    (tmp_path / "sfm" / "points3D.bin").write_bytes(b"from an earlier run")
    code = main(["reconstruct", str(out), "--images", str(images), "--output", str(tmp_path / "sfm")])
    assert code == 1 and "no model" in capsys.readouterr().out
    summary = json.loads((tmp_path / "sfm" / "summary.json").read_text())
    assert summary["num_registered_images"] == 0 and summary["mean_reprojection_error"] is None
    assert not (tmp_path / "sfm" / "points3D.bin").exists()  # no stale model contradicting the summary


def test_pairs_in_matches_maps_keys_back_to_names(tmp_path):
    path = tmp_path / "matches.h5"
    empty = h5io.PairMatches(np.zeros(0), np.zeros(0))
    writers = [lambda h: h5io.write_matches(h, "seq/a.jpg", "b.jpg", empty)]
    h5io.rewrite(path, writers, {}, False)
    assert pairs_in_matches(path, ["b.jpg", "seq/a.jpg"]) == [("seq/a.jpg", "b.jpg")]
    with pytest.raises(DensematchError, match="same key"):
        pairs_in_matches(path, ["seq/a.jpg", "seq-a.jpg", "b.jpg"])
    with pytest.raises(DensematchError, match="without keypoints"):
        pairs_in_matches(path, ["b.jpg"])


def test_old_or_missing_pycolmap_is_reported(monkeypatch):
    from densematch.errors import MissingDependencyError
    from densematch.sfm.colmap import require_pycolmap

    assert require_pycolmap() is pycolmap
    monkeypatch.setattr(pycolmap, "__version__", "3.11.1")
    with pytest.raises(MissingDependencyError, match=r"pycolmap >= 4.2, found 3.11.1"):
        require_pycolmap()
