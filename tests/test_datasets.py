"""MegaDepth / ScanNet readers on fixtures written in the real formats; homography pairs; transforms."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from train_helpers import PlaneScene, apply_homography, smooth_texture, write_image_folder

from densematch.conventions import normalized_to_pixel, pixel_to_normalized
from densematch.data.homography import HomographyConfig, HomographyPairs
from densematch.data.megadepth import MegaDepthConfig, MegaDepthFormatError, megadepth_scenes, scene_names
from densematch.data.scannet import ScanNetConfig, ScanNetFormatError, scannet_indices
from densematch.data.transforms import hflip_intrinsics, scale_intrinsics, shift, to_tensor
from densematch.errors import DensematchError


def resized_homography(H: np.ndarray, size0, new0, size1, new1) -> np.ndarray:
    """``H`` between images resized from ``size0 -> new0`` and ``size1 -> new1`` (all ``(W, H)``)."""
    S0 = scale_intrinsics(np.eye(3), size0, new0)
    S1 = scale_intrinsics(np.eye(3), size1, new1)
    return S1 @ H @ np.linalg.inv(S0)


def photometric_error(sample: dict) -> tuple[float, float]:
    """Mean |image0 - image1(warp0)| over valid pixels, and the same against a wrong (flipped) warp."""

    def error(warp):
        warped = F.grid_sample(sample["image1"][None], warp[None], mode="bilinear", align_corners=False)[0]
        return float((warped - sample["image0"]).abs().mean(dim=0)[sample["valid0"]].mean())

    return error(sample["warp0"]), error(sample["warp0"].flip(1))


def check_against_homography(sample: dict, H: np.ndarray) -> None:
    """warp0 equals the homography on the valid pixels, which cover most of the overlap."""
    height, width = sample["valid0"].shape
    h1, w1 = sample["image1"].shape[-2:]
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    expected = apply_homography(H, np.stack([u, v], axis=-1))
    got = normalized_to_pixel(sample["warp0"].double(), w1, h1).numpy()
    valid = sample["valid0"].numpy()

    def inside(margin):
        u1, v1 = expected[..., 0], expected[..., 1]
        return (
            (u1 >= margin - 0.5)
            & (u1 <= w1 - 0.5 - margin)
            & (v1 >= margin - 0.5)
            & (v1 <= h1 - 0.5 - margin)
        )

    assert (valid & inside(1.5)).sum() > 0.9 * inside(1.5).sum() and not (valid & ~inside(0)).any()
    assert np.abs(got[valid] - expected[valid]).max() < 2e-3


# ------------------------------------------------------------------------------------------ MegaDepth
def write_megadepth(root, scene_name="0001", size=(96, 72), seed=0, overlaps=(0.5, 0.2, 0.005)):
    """A scene in the ``prep_scene_info`` format: two views of a textured plane (pairs share them)."""
    scene = PlaneScene(size, seed=seed)
    images = [smooth_texture(*size, seed=seed)]
    images.append(cv2.warpPerspective(images[0], scene.H_0to1, size, flags=cv2.INTER_CUBIC))
    depths = [scene.depth0(), scene.depth1()]
    rng = np.random.default_rng(seed)
    world_to_cam0 = np.eye(4)
    world_to_cam0[:3, 3] = rng.uniform(-1, 1, 3)
    poses = [world_to_cam0, scene.T_0to1 @ world_to_cam0]
    image_paths, depth_paths = [], []
    for i in range(2):
        image_path = f"Undistorted_SfM/{scene_name}/images/{i}.jpg"
        depth_path = f"phoenix/S6/zl548/MegaDepth_v1/{scene_name}/dense0/depths/{i}.h5"
        (root / image_path).parent.mkdir(parents=True, exist_ok=True)
        (root / depth_path).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(
            str(root / image_path), cv2.cvtColor(images[i], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 98]
        )
        with h5py.File(root / depth_path, "w") as handle:
            handle.create_dataset("depth", data=depths[i].astype(np.float32))
        image_paths.append(image_path)
        depth_paths.append(depth_path)
    corner_K = [K.copy() for K in (scene.K0, scene.K1)]
    for K in corner_K:
        K[:2, 2] += 0.5  # COLMAP's pixel-corner convention, as in the published scene info
    info = {
        "image_paths": np.array(image_paths, dtype=object),
        "depth_paths": np.array(depth_paths, dtype=object),
        "intrinsics": np.array(corner_K, dtype=object),
        "poses": np.array(poses, dtype=object),
        "pairs": np.array([[0, 1]] * len(overlaps)),
        "overlaps": np.array(overlaps),
    }
    (root / "prep_scene_info").mkdir(parents=True, exist_ok=True)
    np.save(root / "prep_scene_info" / f"{scene_name}.npy", info, allow_pickle=True)
    return scene


def test_megadepth_reader_gives_the_exact_warp(tmp_path):
    scene = write_megadepth(tmp_path)
    config = MegaDepthConfig(resolution=(48, 64), shake_t=0, hflip=False)
    (dataset,) = megadepth_scenes(tmp_path, MegaDepthConfig(**{**config.__dict__, "min_overlaps": (0.35,)}))
    sample = dataset[0]
    assert sample["image0"].shape == (3, 48, 64) and sample["depth0"].shape == (48, 64)
    H = resized_homography(scene.H_0to1, (96, 72), (64, 48), (96, 72), (64, 48))
    check_against_homography(sample, H)
    good, wrong = photometric_error(sample)
    assert good < 0.04 and wrong > 3 * good


def test_megadepth_augmentation_keeps_geometry_consistent(tmp_path):
    write_megadepth(tmp_path)
    config = MegaDepthConfig(resolution=(72, 96), shake_t=8, hflip=True, min_overlaps=(0.35,))
    (dataset,) = megadepth_scenes(tmp_path, config)
    flipped = 0
    for seed in range(6):
        sample = dataset.sample(0, np.random.default_rng(seed))
        flipped += int(sample["K0"][0, 0] < 0)
        good, wrong = photometric_error(sample)
        assert good < 0.04 and wrong > 3 * good
    assert 0 < flipped < 6
    a, b = (dataset.sample(0, np.random.default_rng(1)) for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the generator decides everything


def test_megadepth_splits_overlaps_and_errors(tmp_path):
    write_megadepth(tmp_path, "0001")
    write_megadepth(tmp_path, "0015", seed=1)  # a Mega-1500 test scene
    write_megadepth(tmp_path, "0121", seed=2)  # on LoFTR's ignore list
    assert scene_names(tmp_path, MegaDepthConfig()) == ["0001"]
    assert scene_names(tmp_path, MegaDepthConfig(split="test_loftr")) == ["0015"]
    assert scene_names(tmp_path, MegaDepthConfig(split="all", loftr_ignore=False)) == ["0001", "0015", "0121"]
    copies = megadepth_scenes(tmp_path, MegaDepthConfig(resolution=(48, 64)))
    assert [len(s) for s in copies] == [2, 1]  # overlap 0.5 and 0.2 above 0.01; only 0.5 above 0.35
    with pytest.raises(MegaDepthFormatError, match="9999"):
        scene_names(tmp_path, MegaDepthConfig(scenes=("9999",)))
    with pytest.raises(MegaDepthFormatError, match="prep_scene_info"):
        megadepth_scenes(tmp_path / "nowhere")
    np.save(tmp_path / "prep_scene_info" / "0002.npy", {"pairs": np.zeros((1, 2))}, allow_pickle=True)
    with pytest.raises(MegaDepthFormatError, match="image_paths"):
        megadepth_scenes(tmp_path, MegaDepthConfig(scenes=("0002",)))


# ------------------------------------------------------------------------------------------ ScanNet
def write_scannet(root, size=(96, 72), seed=0):
    scene = PlaneScene(size, seed=seed)
    scene.K1 = scene.K0  # ScanNet uses one intrinsic matrix per scan
    folder = root / "scans" / "scans_train" / "scene0007_01"
    for sub in ("color", "depth", "pose", "intrinsic"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    image0 = smooth_texture(*size, seed=seed)
    images = {0: image0, 10: cv2.warpPerspective(image0, scene.H_0to1, size, flags=cv2.INTER_CUBIC)}
    depths = {0: scene.depth0(), 10: scene.depth1()}
    rng = np.random.default_rng(seed)
    cam_to_world0 = np.eye(4)
    cam_to_world0[:3, 3] = rng.uniform(-1, 1, 3)
    poses = {0: cam_to_world0, 10: cam_to_world0 @ np.linalg.inv(scene.T_0to1)}
    for frame in (0, 10):
        cv2.imwrite(
            str(folder / "color" / f"{frame}.jpg"),
            cv2.cvtColor(images[frame], cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 98],
        )
        cv2.imwrite(str(folder / "depth" / f"{frame}.png"), np.round(depths[frame] * 1000).astype(np.uint16))
        np.savetxt(folder / "pose" / f"{frame}.txt", poses[frame])
    K4 = np.eye(4)
    K4[:3, :3] = scene.K0
    np.savetxt(folder / "intrinsic" / "intrinsic_color.txt", K4)
    (root / "scannet_indices").mkdir(parents=True, exist_ok=True)
    np.savez(
        root / "scannet_indices" / "scene0007_01.npz",
        name=np.array([[7, 1, 0, 10], [7, 1, 0, 5]]),
        score=np.array([0.6, 0.4]),
    )
    return scene


def test_scannet_reader_gives_the_exact_warp(tmp_path):
    scene = write_scannet(tmp_path)
    (dataset,) = scannet_indices(tmp_path, ScanNetConfig(resolution=(48, 64)))
    assert len(dataset) == 1  # frame 5 is not a multiple of 10
    sample = dataset[0]
    H = resized_homography(scene.H_0to1, (96, 72), (64, 48), (96, 72), (64, 48))
    check_against_homography(sample, H)
    good, wrong = photometric_error(sample)
    assert good < 0.04 and wrong > 3 * good
    expected_T = torch.tensor(scene.T_0to1, dtype=torch.float32)
    assert torch.allclose(sample["T_0to1"], expected_T, atol=1e-5)


def test_scannet_errors_name_the_problem(tmp_path):
    with pytest.raises(ScanNetFormatError, match="scannet_indices"):
        scannet_indices(tmp_path)
    write_scannet(tmp_path)
    (tmp_path / "scans/scans_train/scene0007_01/pose/10.txt").write_text("1 2 3\n")
    (dataset,) = scannet_indices(tmp_path, ScanNetConfig(resolution=(48, 64)))
    with pytest.raises(ScanNetFormatError, match="10.txt"):
        dataset[0]
    (tmp_path / "scannet_indices" / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(ScanNetFormatError, match="broken.npz"):
        scannet_indices(tmp_path)


# ------------------------------------------------------------------------------------------ homography pairs
def test_homography_pairs_are_photometrically_consistent(tmp_path):
    write_image_folder(tmp_path / "images", count=2, size=(160, 120))
    still = HomographyConfig(resolution=(64, 80), brightness=0, contrast=0, saturation=0, noise_std=0)
    dataset = HomographyPairs(tmp_path / "images", still)
    assert len(dataset) == 2
    for seed in range(3):
        sample = dataset.sample(seed % 2, np.random.default_rng(seed))
        assert sample["image0"].shape == (3, 64, 80) and sample["warp0"].shape == (64, 80, 2)
        assert sample["valid0"].float().mean() > 0.3
        check_against_homography(sample, sample["H_0to1"].double().numpy())
        good, wrong = photometric_error(sample)
        assert good < 0.03 and wrong > 3 * good
    jittered = HomographyPairs(tmp_path / "images", HomographyConfig(resolution=(64, 80)))
    a, b = jittered.sample(0, np.random.default_rng(5)), jittered.sample(0, np.random.default_rng(5))
    c = jittered.sample(0, np.random.default_rng(6))
    assert torch.equal(a["image1"], b["image1"]) and not torch.equal(a["image1"], c["image1"])


def test_homography_pairs_need_images(tmp_path):
    with pytest.raises(DensematchError, match="no images"):
        HomographyPairs(tmp_path)


# ------------------------------------------------------------------------------------------ transforms
def project(K, point):
    uvw = K @ point
    return uvw[:2] / uvw[2]


def test_scale_intrinsics_follow_the_resize():
    K = np.array([[100.0, 0, 31.5], [0, 100.0, 23.5], [0, 0, 1]])
    point = np.array([0.3, -0.2, 2.0])
    scaled = scale_intrinsics(K, (64, 48), (32, 24))
    u, v = project(K, point)
    assert np.allclose(project(scaled, point), [(u + 0.5) / 2 - 0.5, (v + 0.5) / 2 - 0.5])
    assert np.allclose(scale_intrinsics(scaled, (32, 24), (64, 48)), K)


def test_shift_and_flip_move_content_and_intrinsics_together():
    image = torch.arange(48.0).reshape(1, 6, 8)
    moved = shift(image, 2, -1)
    assert torch.equal(moved[0, 0, 2:], image[0, 1, :6]) and moved[0, :, :2].abs().sum() == 0
    assert moved[0, -1].abs().sum() == 0
    K = np.array([[50.0, 0, 3.5], [0, 50.0, 2.5], [0, 0, 1]])
    point = np.array([0.05, 0.02, 1.0])
    u, v = project(hflip_intrinsics(K, 8), point)
    assert np.allclose([u, v], [7 - project(K, point)[0], project(K, point)[1]])


def test_pixel_conversions_roundtrip_sanity():
    uv = np.array([[0.0, 0.0], [63.0, 47.0]])
    assert np.allclose(normalized_to_pixel(pixel_to_normalized(uv, 64, 48), 64, 48), uv)


# ------------------------------------------------------------------------------------------ synthetic sources
class FakeSyntheticPairs(torch.utils.data.Dataset):
    """Stands in for densematch.data.synthetic.SyntheticPairs: plane pairs at 96 x 72 with a hole."""

    def __init__(self, root):
        self.root = root
        self.scene = PlaneScene((96, 72), seed=7)

    def __len__(self):
        return 2

    def __getitem__(self, index):
        from densematch.data.transforms import depth_pair_sample

        image0 = smooth_texture(96, 72, seed=index)
        image1 = cv2.warpPerspective(image0, self.scene.H_0to1, (96, 72), flags=cv2.INTER_CUBIC)
        sample = depth_pair_sample(
            to_tensor(image0),
            to_tensor(image1),
            torch.tensor(self.scene.depth0(), dtype=torch.float32),
            torch.tensor(self.scene.depth1(), dtype=torch.float32),
            self.scene.K0,
            self.scene.K1,
            self.scene.T_0to1,
        )
        sample["valid0"][:, :30] = False  # a hole known only to the engine
        return sample


def test_synthetic_source_is_detected_resized_and_keeps_the_engine_mask(tmp_path, monkeypatch):
    import json
    import sys
    import types

    from densematch.train.sources import open_source

    fake = types.ModuleType("densematch.data.synthetic")
    fake.SyntheticPairs = FakeSyntheticPairs
    monkeypatch.setitem(sys.modules, "densematch.data.synthetic", fake)
    folder = tmp_path / "synth"
    folder.mkdir()
    (folder / "pairs.json").write_text(
        json.dumps({"pairs": [{"image0": "a", "depth0": "d", "depth1": "e", "valid0": "v"}]})
    )
    source = open_source(str(folder), (48, 64))
    assert source.kind == "synthetic"
    sample = source.pairs.sample(1, np.random.default_rng(0))
    assert sample["image0"].shape == (3, 48, 64) and sample["depth1"].shape == (48, 64)
    H = resized_homography(FakeSyntheticPairs(folder).scene.H_0to1, (96, 72), (64, 48), (96, 72), (64, 48))
    u1 = normalized_to_pixel(sample["warp0"].double(), 64, 48).numpy()
    u, v = np.meshgrid(np.arange(64.0), np.arange(48.0))
    expected = apply_homography(H, np.stack([u, v], axis=-1))
    valid = sample["valid0"].numpy()
    assert valid[:, :19].sum() == 0 and valid[:, 22:].mean() > 0.6  # the hole (30 of 96 px) survives resizing
    assert np.abs(u1[valid] - expected[valid]).max() < 0.05
    good, wrong = photometric_error(sample)
    assert good < 0.04 and wrong > 3 * good
    # a shared-data folder (pairs.json without depth) is just a folder of images
    (tmp_path / "plain").mkdir()
    write_image_folder(tmp_path / "plain", count=1)
    (tmp_path / "plain" / "pairs.json").write_text(json.dumps({"pairs": [{"image0": "a", "H_0to1": []}]}))
    assert open_source(str(tmp_path / "plain"), (48, 64)).kind == "homography"


def test_scannet_lost_tracking_pose_gives_no_ground_truth(tmp_path):
    write_scannet(tmp_path)
    np.savetxt(tmp_path / "scans/scans_train/scene0007_01/pose/10.txt", np.full((4, 4), -np.inf))
    (dataset,) = scannet_indices(tmp_path, ScanNetConfig(resolution=(48, 64)))
    sample = dataset[0]
    assert not sample["valid0"].any() and torch.isfinite(sample["T_0to1"]).all()
