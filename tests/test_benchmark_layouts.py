"""Readers of the standard layouts (MegaDepth-1500, ScanNet-1500, HPatches, WxBS) on tiny fixtures.

Each fixture is written in the published format (LoFTR / RoMa / HPatches / WxBS archives) with
random images; the readers must turn them into the same pair list with GT in our conventions.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from densematch.eval import BenchmarkOptions, DatasetFormatError, load_benchmark, run_benchmark
from densematch.geometry import apply_homography
from densematch.matchers import Matches, PairMatcher


def save_image(path, width: int, height: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def random_pose(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(rng.normal(0, 0.1, 3))[0]
    T[:3, 3] = rng.normal(0, 1, 3)
    return T


def object_array(items) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


def write_megadepth(root, loftr_style: bool):
    """Scene 0015 with 4 images (index 3 unused, path None as in the real files) and 2 pairs."""
    sizes = [(80, 60), (60, 80), (100, 50), None]
    names = [f"Undistorted_SfM/0015/images/{i}.jpg" for i in range(3)] + [None]
    image_root = root / "test" if loftr_style else root
    for name, size, seed in zip(names[:3], sizes[:3], range(3), strict=True):
        save_image(image_root / name, *size, seed=seed)
    Ks = [np.array([[70.0 + i, 0, 40], [0, 71.0 + i, 30], [0, 0, 1]]) for i in range(4)]
    poses = [random_pose(i) for i in range(4)]
    info_dir = root if loftr_style else root / "megadepth_test_1500_scene_info"
    info_dir.mkdir(parents=True, exist_ok=True)
    np.savez(
        info_dir / "0015_0.1_0.3.npz",
        pair_infos=object_array([((0, 1), 0.2, np.zeros((3, 2))), ((1, 2), 0.25, np.zeros((1, 2)))]),
        intrinsics=object_array(Ks),
        poses=object_array(poses),
        image_paths=object_array(names),
        depth_paths=object_array(names),
    )
    if loftr_style:
        (info_dir / "megadepth_test_1500.txt").write_text("0015_0.1_0.3\n")
    return Ks, poses


@pytest.mark.parametrize("loftr_style", [False, True])
def test_megadepth_1500(tmp_path, loftr_style):
    Ks, poses = write_megadepth(tmp_path, loftr_style)
    bench = load_benchmark(tmp_path)
    assert (bench.layout, bench.task, len(bench.pairs)) == ("megadepth-1500", "relative_pose", 2)
    first, second = bench.pairs
    assert first.name0 == "Undistorted_SfM/0015/images/0.jpg" and first.image0.is_file()
    assert np.allclose(first.gt["K1"], Ks[1])
    assert np.allclose(second.gt["T_0to1"], poses[2] @ np.linalg.inv(poses[1]))  # world-to-camera poses
    assert (first.eval_scale0, first.eval_scale1, second.eval_scale1) == (
        15.0,
        15.0,
        12.0,
    )  # longer side 1200


def test_scannet_1500(tmp_path):
    names = np.array([[707, 0, 15, 585], [708, 1, 0, 45]])
    rel_pose = np.stack([random_pose(0)[:3].ravel(), random_pose(1)[:3].ravel()])
    np.savez(tmp_path / "test.npz", name=names, rel_pose=rel_pose)
    K = np.array([[1165.0, 0, 649.0, 0], [0, 1165.0, 484.0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    for scene, frames in (("scene0707_00", (15, 585)), ("scene0708_01", (0, 45))):
        for frame in frames:
            save_image(tmp_path / "scans_test" / scene / "color" / f"{frame}.jpg", 64, 48)
        (tmp_path / "scans_test" / scene / "intrinsic").mkdir()
        np.savetxt(tmp_path / "scans_test" / scene / "intrinsic" / "intrinsic_color.txt", K)
    bench = load_benchmark(tmp_path)
    assert (bench.layout, len(bench.pairs)) == ("scannet-1500", 2)
    pair = bench.pairs[1]
    assert pair.name0 == "scans_test/scene0708_01/color/0.jpg" and pair.image1.name == "45.jpg"
    assert np.allclose(pair.gt["K0"], K[:3, :3]) and np.allclose(pair.gt["T_0to1"], random_pose(1))
    assert pair.eval_scale0 == 10.0  # shorter side 48 -> 480


def write_hpatches(root) -> dict:
    seqs = root / "hpatches-sequences-release"
    homographies = {}
    for k in range(1, 7):
        save_image(seqs / "v_tiny" / f"{k}.ppm", 64 + k, 48, seed=k)
    save_image(seqs / "i_dc" / "1.ppm", 8, 8)  # one of the 8 sequences LoFTR / RoMa skip
    for k in range(2, 7):
        H = np.array([[1.0 + 0.01 * k, 0.02, k], [0.01, 1.0, -k], [1e-4, 0, 1]])
        np.savetxt(seqs / "v_tiny" / f"H_1_{k}", H)
        homographies[k] = H
    return homographies


class ShiftedHomographyMatcher(PairMatcher):
    """Maps a grid of image-0 points by H_0to1 and shifts them by one pixel to the right."""

    def __init__(self, bench):
        self.homographies = {str(p.image1): p.gt["H_0to1"] for p in bench.pairs}

    def match_pair(self, image0, image1) -> Matches:
        grid = np.stack(np.meshgrid(np.linspace(0, 60, 8), np.linspace(0, 45, 8)), axis=-1).reshape(-1, 2)
        kpts1 = apply_homography(self.homographies[str(image1)], grid) + [1.0, 0.0]
        return Matches(grid, kpts1, np.ones(len(grid)), Image.open(image0).size, Image.open(image1).size)


def test_hpatches(tmp_path):
    homographies = write_hpatches(tmp_path)
    bench = load_benchmark(tmp_path)
    assert (bench.layout, bench.task, len(bench.pairs)) == ("hpatches", "homography", 5)
    assert [p.name1 for p in bench.pairs] == [f"v_tiny/{k}.ppm" for k in range(2, 7)]
    assert np.allclose(bench.pairs[2].gt["H_0to1"], homographies[4])
    assert bench.pairs[0].eval_scale1 == 10.0
    # a 1 px shift in image 1 is a 1 px corner error, 10 px at the 480 px evaluation resolution
    result = run_benchmark(
        bench, ShiftedHomographyMatcher(bench), {"matcher": "shift"}, tmp_path / "o", BenchmarkOptions()
    )
    for row in result.rows:
        assert row["err_px"] == pytest.approx(1.0, abs=1e-6)
        assert row["err_eval_px"] == pytest.approx(10.0, abs=1e-5)
    assert result.summary["auc_error_field"] == "err_eval_px"
    assert result.summary["auc@10px"] == pytest.approx(0.0, abs=1e-3)
    assert result.summary["auc@3px"] == 0.0


def test_wxbs(tmp_path):
    for folder, suffix in (("WGABS/kremlin", ".png"), ("WLABS/kyiv", ".jpg")):
        save_image(tmp_path / "v1.1" / folder / f"01{suffix}", 40, 30)
        save_image(tmp_path / "v1.1" / folder / f"02{suffix}", 30, 40)
        np.savetxt(tmp_path / "v1.1" / folder / "corrs.txt", np.arange(12.0).reshape(3, 4))
    bench = load_benchmark(tmp_path)
    assert (bench.layout, bench.task, len(bench.pairs)) == ("wxbs", "gt_correspondences", 2)
    assert bench.pairs[1].name0 == "WLABS/kyiv/01.jpg"
    assert np.array_equal(bench.pairs[0].gt["corrs_0to1"], np.arange(12.0).reshape(3, 4))


def test_unknown_and_broken_layouts(tmp_path):
    with pytest.raises(DatasetFormatError, match="not a benchmark folder"):
        load_benchmark(tmp_path)
    with pytest.raises(DatasetFormatError, match="not found"):
        load_benchmark(tmp_path / "missing")
    write_hpatches(tmp_path)
    (tmp_path / "hpatches-sequences-release" / "v_tiny" / "H_1_4").unlink()
    with pytest.raises(DatasetFormatError, match="H_1_4"):
        load_benchmark(tmp_path)
