"""Image lists, pair lists and retrieval (sfm.pairs, sfm.retrieval and `densematch pairs`)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from densematch.cli import main
from densematch.errors import DensematchError, ImageReadError
from densematch.sfm.pairs import (
    check_pairs_against_images,
    list_images,
    pairs_exhaustive,
    pairs_from_descriptors,
    pairs_sequential,
    read_pairs,
    unique_pairs,
    write_pairs,
)
from densematch.sfm.retrieval import VladConfig, kmeans, sift_vlad_descriptors, vlad


def _touch_images(folder, names):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8)).save(path)


def test_list_images_is_recursive_sorted_and_skips_hidden_and_other_files(tmp_path):
    _touch_images(tmp_path, ["b.png", "a.jpg", "sub/c.PNG", ".hidden/d.png", ".e.png"])
    (tmp_path / "notes.txt").write_text("x")
    assert list_images(tmp_path) == ["a.jpg", "b.png", "sub/c.PNG"]
    with pytest.raises(ImageReadError, match="not found"):
        list_images(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="no image files"):
        list_images(tmp_path / "empty")


def test_exhaustive_pairs_are_each_unordered_pair_once():
    names = [f"{i}.jpg" for i in range(6)]
    pairs = pairs_exhaustive(names)
    assert len(pairs) == 15
    assert len({frozenset(p) for p in pairs}) == 15
    assert all(names.index(a) < names.index(b) for a, b in pairs)


def test_sequential_pairs_hand_computed():
    names = list("abcdefghij")
    assert pairs_sequential(names[:4], 2) == [("a", "b"), ("a", "c"), ("b", "c"), ("b", "d"), ("c", "d")]
    quadratic = pairs_sequential(names, 2, quadratic=True)
    # image a: successors b, c plus a + 4 = e, a + 8 = i; image b: c, d plus f, j
    assert [p for p in quadratic if p[0] == "a"] == [("a", "b"), ("a", "c"), ("a", "e"), ("a", "i")]
    assert [p for p in quadratic if p[0] == "b"] == [("b", "c"), ("b", "d"), ("b", "f"), ("b", "j")]
    assert len(unique_pairs(quadratic)) == len(quadratic)
    with pytest.raises(DensematchError, match="at least 1"):
        pairs_sequential(names, 0)


def test_pairs_from_descriptors_picks_nearest_neighbours():
    # two tight groups on the unit circle: {0, 1, 2} around 0 degrees and {3, 4} around 90 degrees
    angles = np.radians([0, 5, -8, 90, 95])
    descriptors = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    names = [f"{i}" for i in range(5)]
    pairs = pairs_from_descriptors(names, descriptors, k=1)
    assert pairs == [("0", "1"), ("0", "2"), ("3", "4")]
    assert len(pairs_from_descriptors(names, descriptors, k=10)) == 10  # k larger than the collection: all
    with pytest.raises(DensematchError, match="descriptors"):
        pairs_from_descriptors(names, descriptors[:3], k=1)


def test_pair_list_round_trip_and_errors(tmp_path):
    pairs = [("a.jpg", "sub/b.jpg"), ("c.jpg", "a.jpg")]
    path = write_pairs(tmp_path / "pairs.txt", pairs)
    assert path.read_text() == "a.jpg sub/b.jpg\nc.jpg a.jpg\n"
    assert read_pairs(path) == pairs
    (tmp_path / "commented.txt").write_text("# header\n\na.jpg b.jpg\n")
    assert read_pairs(tmp_path / "commented.txt") == [("a.jpg", "b.jpg")]
    (tmp_path / "bad.txt").write_text("a.jpg b.jpg\na.jpg\n")
    with pytest.raises(DensematchError, match=r"bad.txt:2: expected two image names"):
        read_pairs(tmp_path / "bad.txt")
    (tmp_path / "self.txt").write_text("a.jpg a.jpg\n")
    with pytest.raises(DensematchError, match="with itself"):
        read_pairs(tmp_path / "self.txt")
    with pytest.raises(DensematchError, match="whitespace"):
        write_pairs(tmp_path / "spaces.txt", [("a b.jpg", "c.jpg")])
    assert not (tmp_path / "spaces.txt").exists()


def test_unique_pairs_and_name_check():
    assert unique_pairs([("a", "b"), ("b", "a"), ("a", "c"), ("a", "b")]) == [("a", "b"), ("a", "c")]
    check_pairs_against_images([("a", "b")], ["a", "b", "c"], "dir")
    with pytest.raises(ImageReadError, match="not in dir: x, y"):
        check_pairs_against_images([("a", "x"), ("y", "b")], ["a", "b"], "dir")


def test_kmeans_recovers_separated_clusters_and_vlad_is_normalised():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = np.concatenate([c + rng.normal(scale=0.3, size=(200, 2)) for c in centres])
    found = kmeans(points, 3, 20, np.random.default_rng(1))
    assert np.abs(np.sort(found, axis=0) - np.sort(centres, axis=0)).max() < 0.2
    descriptor = vlad(points[:50], found)
    assert descriptor.shape == (6,)
    assert np.isclose(np.linalg.norm(descriptor), 1.0)
    assert np.array_equal(vlad(np.zeros((0, 2)), found), np.zeros(6))


def test_sift_vlad_retrieval_finds_images_of_the_same_scene(shared_data):
    sets = {
        "graf": [shared_data / "oxford_graf" / f"img{i}.ppm" for i in range(1, 7)],
        "boat": [shared_data / "oxford_boat" / f"img{i}.pgm" for i in range(1, 7)],
        "kitti": sorted((shared_data / "kitti_odometry_00" / "image_0").glob("*.png"))[:12:2],
    }
    paths = [p for group in sets.values() for p in group]
    labels = [label for label, group in sets.items() for _ in group]
    config = VladConfig(max_side=320, max_keypoints=1000, vocabulary_size=16)
    descriptors = sift_vlad_descriptors(paths, config)
    assert descriptors.shape == (18, 16 * 128)
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, rtol=1e-5)
    names = [str(i) for i in range(len(paths))]
    pairs = pairs_from_descriptors(names, descriptors, k=2)
    same_scene = [labels[int(a)] == labels[int(b)] for a, b in pairs]
    assert len(pairs) >= 18 and np.mean(same_scene) >= 0.9


def test_cli_pairs_exhaustive_and_sequential(tmp_path, capsys):
    _touch_images(tmp_path / "images", ["a.png", "b.png", "c.png", "d.png"])
    out = tmp_path / "run"
    assert main(["pairs", str(tmp_path / "images"), "--exhaustive", "--output", str(out)]) == 0
    assert len(read_pairs(out / "pairs.txt")) == 6
    assert "6 pairs of 4 images" in capsys.readouterr().out
    assert main(["pairs", str(tmp_path / "images"), "--sequential", "1", "--output", str(out)]) == 0
    assert read_pairs(out / "pairs.txt") == [("a.png", "b.png"), ("b.png", "c.png"), ("c.png", "d.png")]
    assert main(["pairs", str(tmp_path / "absent"), "--exhaustive", "--output", str(out)]) == 2
    assert "image folder not found" in capsys.readouterr().err
    # --output is a folder: an existing file or a pair-list file name is refused in one line
    assert main(["pairs", str(tmp_path / "images"), "--exhaustive", "--output", str(out / "pairs.txt")]) == 2
    assert "is an existing file" in capsys.readouterr().err
    assert main(["pairs", str(tmp_path / "images"), "--exhaustive", "--output", str(tmp_path / "new.txt")]) == 2
    assert "--output is a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # exactly one strategy
        main(["pairs", str(tmp_path / "images"), "--exhaustive", "--sequential", "2", "--output", str(out)])


def test_cli_pairs_retrieval_and_missing_dinov2_backbone(tmp_path, capsys):
    from sfm_synthetic import make_collection

    make_collection(tmp_path / "images", count=4)
    out, again = tmp_path / "one", tmp_path / "again"
    assert main(["pairs", str(tmp_path / "images"), "--retrieval", "1", "--output", str(out)]) == 0
    assert 2 <= len(read_pairs(out / "pairs.txt")) <= 4
    assert main(["pairs", str(tmp_path / "images"), "--retrieval", "1", "--output", str(again)]) == 0
    assert (again / "pairs.txt").read_text() == (out / "pairs.txt").read_text()  # seeded vocabulary
    code = main(["pairs", str(tmp_path / "images"), "--retrieval", "1", "--descriptor", "dinov2-gem",
                 "--weights", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "x")])
    assert code == 2 and "--weights: file not found" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_dinov2_gem_descriptors_are_normalised_and_deterministic(tmp_path):
    import torch
    from sfm_synthetic import make_collection

    from densematch.backbones.dinov2 import DINOV2_CONFIGS, DinoV2
    from densematch.sfm.retrieval import dinov2_gem_descriptors

    make_collection(tmp_path / "images", count=3)
    paths = sorted((tmp_path / "images").iterdir())
    torch.manual_seed(0)
    weights = DinoV2(DINOV2_CONFIGS["vits14"]).state_dict()
    desc = dinov2_gem_descriptors(paths, weights, arch="vits14", side=112)
    assert desc.shape == (3, 384) and np.allclose(np.linalg.norm(desc, axis=1), 1, atol=1e-5)
    again = dinov2_gem_descriptors(paths[:1], weights, arch="vits14", side=112)
    assert np.allclose(again[0], desc[0], atol=1e-5)  # deterministic per image


def test_dinov2_gem_hook_with_random_weights(tmp_path):
    from sfm_synthetic import make_collection

    from densematch.backbones import dinov2
    from densematch.sfm.retrieval import dinov2_gem_descriptors

    make_collection(tmp_path, count=2)
    weights = dinov2.DinoV2(dinov2.DINOV2_CONFIGS["vits14"]).state_dict()
    paths = sorted(tmp_path.glob("*.png"))
    descriptors = dinov2_gem_descriptors(paths, weights, arch="vits14", side=56)
    assert descriptors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, rtol=1e-5)
