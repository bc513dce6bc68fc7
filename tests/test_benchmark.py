"""The benchmark end to end on tiny fixtures in the pairs.json convention (SIFT and fake matchers)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from densematch.cli import main
from densematch.errors import ImageReadError
from densematch.eval import (
    BenchmarkOptions,
    DatasetFormatError,
    PredictionCacheError,
    format_results,
    load_benchmark,
    run_benchmark,
)
from densematch.geometry import RansacConfig, apply_homography, homography_from_plane, warp_from_depth
from densematch.matchers import DenseField, Matches, PairMatcher, get_matcher

K = np.array([[80.0, 0, 47.5], [0, 80.0, 35.5], [0, 0, 1]])
W, H = 96, 72


def texture(height: int, width: int, seed: int) -> np.ndarray:
    """A blob texture SIFT can match: blurred noise, contrast-stretched, RGB uint8."""
    noise = np.random.default_rng(seed).random((height // 4, width // 4)).astype(np.float32)
    image = cv2.GaussianBlur(cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC), (0, 0), 1.5)
    image = (image - image.min()) / (image.max() - image.min()) * 255
    return np.repeat(image.astype(np.uint8)[..., None], 3, axis=2)


def pose(rvec, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64))[0]
    T[:3, 3] = t
    return T


def write_pairs(folder: Path, kind: str, pairs: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pairs.json").write_text(json.dumps({"name": folder.name, "type": kind, "pairs": pairs}))
    return folder


def dense_gt(depth0: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uv1, valid = warp_from_depth(
        torch.from_numpy(depth0), torch.from_numpy(K), torch.from_numpy(K), torch.from_numpy(T)
    )
    return uv1.numpy(), valid.numpy()


@pytest.fixture
def pose_set(tmp_path) -> Path:
    """Two relative-pose pairs with dense GT, as the synthetic data engine writes them.

    Pair 0: a fronto-parallel plane at depth 4 (its warp is the plane homography), valid0 as PNG.
    Pair 1: a "roof" of two planes (not degenerate for the essential matrix), valid0 as .npy.
    """
    folder = tmp_path / "synthetic"
    folder.mkdir()
    T_plane, T_roof = pose([0, 0.05, 0], [0.4, 0, 0]), pose([0.02, -0.08, 0.03], [-0.5, 0.1, 0.05])
    plane = np.full((H, W), 4.0, dtype=np.float32)
    roof = (4.0 + 0.05 * np.abs(np.arange(W) - W / 2))[None].repeat(H, 0).astype(np.float32)
    entries = []
    for index, (depth0, T) in enumerate(((plane, T_plane), (roof, T_roof))):
        image0 = texture(H, W, seed=index)
        homography = homography_from_plane(K, K, T, [0, 0, 1], 4.0)
        image1 = cv2.warpPerspective(image0, homography, (W, H))
        Image.fromarray(image0).save(folder / f"{index}_a.png")
        Image.fromarray(image1).save(folder / f"{index}_b.png")
        np.save(folder / f"{index}_depth0.npy", depth0)
        np.save(folder / f"{index}_depth1.npy", np.full((H, W), 4.0, dtype=np.float32))
        valid = dense_gt(depth0.astype(np.float64), T)[1]
        if index == 0:
            Image.fromarray(valid.astype(np.uint8) * 255).save(folder / "0_valid0.png")
        else:
            np.save(folder / "1_valid0.npy", valid)
        entries.append(
            {
                "image0": f"{index}_a.png",
                "image1": f"{index}_b.png",
                "size0": [W, H],
                "size1": [W, H],
                "K0": K.tolist(),
                "K1": K.tolist(),
                "T_0to1": T.tolist(),
                "depth0": f"{index}_depth0.npy",
                "depth1": f"{index}_depth1.npy",
                "valid0": "0_valid0.png" if index == 0 else "1_valid0.npy",
            }
        )
    return write_pairs(folder, "relative_pose", entries)


class GroundTruthDenseMatcher(PairMatcher):
    """A dense "matcher" returning the GT warp with a known error pattern over image-0 columns.

    Columns 4k are off by 2 px, columns 4k + 2 by 8 px (in random directions, so that the wrong
    matches do not form a coherent second motion), odd columns are exact.
    """

    name = "gt_dense"

    def __init__(self, benchmark, num: int = 400, seed: int = 0):
        self.fields = {}
        for pair in benchmark.pairs:
            depth0 = np.load(pair.gt["depth0"]).astype(np.float64)
            uv1, valid = dense_gt(depth0, pair.gt["T_0to1"])
            angle = np.random.default_rng(7).uniform(0, 2 * np.pi, (H, W))
            magnitude = np.zeros((H, W))
            magnitude[:, 0::4], magnitude[:, 2::4] = 2.0, 8.0
            uv1 += np.stack([np.cos(angle), np.sin(angle)], axis=-1) * magnitude[..., None]
            self.fields[str(pair.image0)] = (uv1.astype(np.float32), valid)
        self.num, self.seed, self.calls = num, seed, 0

    @property
    def is_dense(self) -> bool:
        return True

    def match_dense(self, image0, image1) -> DenseField:
        self.calls += 1
        warp, valid = self.fields[str(image0)]
        return DenseField(warp, valid.astype(np.float32))

    def match_pair(self, image0, image1) -> Matches:
        self.calls += 1
        warp, valid = self.fields[str(image0)]
        v, u = np.nonzero(valid)
        pick = np.random.default_rng(self.seed).choice(len(u), self.num, replace=False)
        kpts0 = np.stack([u[pick], v[pick]], axis=1).astype(np.float64)
        return Matches(kpts0, warp[v[pick], u[pick]], np.ones(self.num), (W, H), (W, H))


def read_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_relative_pose_benchmark_with_dense_gt(pose_set, tmp_path):
    benchmark = load_benchmark(pose_set)
    assert benchmark.task == "relative_pose" and benchmark.has_dense_gt
    matcher = GroundTruthDenseMatcher(benchmark)
    out = tmp_path / "out"
    result = run_benchmark(benchmark, matcher, {"matcher": "gt_dense"}, out, BenchmarkOptions(progress=False))
    rows = read_rows(out)
    assert rows == json.loads(json.dumps(result.rows))
    assert [r["image0"] for r in rows] == ["0_a.png", "1_a.png"]
    for row in rows:
        assert row["num_matches"] == 400 and row["num_inliers"] > 100
        assert np.asarray(row["R"]).shape == (3, 3) and len(row["t"]) == 3
        assert row["err_deg"] == max(row["err_R_deg"], row["err_t_deg"])
    assert rows[1]["err_deg"] < 1.5  # the non-planar pair (the plane is nearly degenerate at this size)

    # PCK, computed independently for the plane: GT = plane homography, errors 0 / 2 / 8 px by column
    homography = homography_from_plane(K, K, benchmark.pairs[0].gt["T_0to1"], [0, 0, 1], 4.0)
    grid = np.stack(np.meshgrid(np.arange(W), np.arange(H)), axis=-1).astype(np.float64)
    gt = apply_homography(homography, grid)
    valid = (gt[..., 0] >= -0.5) & (gt[..., 0] <= W - 0.5) & (gt[..., 1] >= -0.5) & (gt[..., 1] <= H - 0.5)
    column = np.arange(W)[None].repeat(H, 0)
    assert rows[0]["num_valid_gt"] == valid.sum()
    assert rows[0]["pck@1px"] == pytest.approx((column % 2 == 1)[valid].mean())
    assert rows[0]["pck@3px"] == rows[0]["pck@5px"] == pytest.approx((column % 4 != 2)[valid].mean())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pck@1px"] == pytest.approx(100 * np.mean([r["pck@1px"] for r in rows]), abs=1e-3)
    assert summary["num_pairs"] == 2 and summary["matcher"] == "gt_dense"
    assert set(summary) >= {"auc@5", "auc@10", "auc@20", "num_failed", "estimator", "matcher_config"}
    assert matcher.calls == 4  # match_pair + match_dense per pair
    assert "auc@10" in format_results(summary, rows)


def test_predictions_are_cached_and_guarded(pose_set, tmp_path):
    benchmark = load_benchmark(pose_set)
    matcher = GroundTruthDenseMatcher(benchmark)
    out = tmp_path / "out"
    quiet = BenchmarkOptions(progress=False)
    first = run_benchmark(benchmark, matcher, {"matcher": "gt_dense", "num": 400}, out, quiet)
    again = run_benchmark(benchmark, matcher, {"matcher": "gt_dense", "num": 400}, out, quiet)
    assert matcher.calls == 4 and again.rows == first.rows  # nothing re-matched

    poselib = BenchmarkOptions(
        estimator=RansacConfig("poselib", threshold_px=0.5), metrics_only=True, progress=False
    )
    rescored = run_benchmark(benchmark, None, {"matcher": "gt_dense", "num": 400}, out, poselib)
    assert matcher.calls == 4 and rescored.summary["estimator"]["method"] == "poselib"
    assert rescored.rows[1]["err_deg"] < 1.0

    with pytest.raises(PredictionCacheError, match="num: 400 -> 800"):
        run_benchmark(benchmark, matcher, {"matcher": "gt_dense", "num": 800}, out, quiet)
    run_benchmark(
        benchmark, matcher, {"matcher": "gt_dense", "num": 800}, out, BenchmarkOptions(overwrite=True)
    )
    assert matcher.calls == 8
    with pytest.raises(PredictionCacheError, match="no cached predictions"):
        run_benchmark(benchmark, None, {"matcher": "gt_dense"}, tmp_path / "empty", poselib)


def test_bundle_adjustment_refinement_of_any_matcher(pose_set, tmp_path):
    benchmark = load_benchmark(pose_set)
    matcher = GroundTruthDenseMatcher(benchmark)
    out = tmp_path / "out"
    plain = run_benchmark(benchmark, matcher, {"matcher": "gt_dense", "num": 400}, out,
                          BenchmarkOptions(progress=False))
    refined = run_benchmark(benchmark, None, {"matcher": "gt_dense", "num": 400}, out,
                            BenchmarkOptions(metrics_only=True, progress=False, pose_refinement="ba"))
    assert matcher.calls == 4 and refined.summary["pose_refinement"] == "ba"
    assert refined.summary_path.name.endswith("-ba.json")  # beside the unrefined summary, never over it
    assert plain.summary_path.name == "summary.json" and plain.summary["pose_refinement"] is None
    before, after = plain.rows[1], refined.rows[1]  # the roof pair (pair 0 is a plane: degenerate for BA too)
    assert after["err_deg"] < 1.0 and after["num_inliers"] == before["num_inliers"]
    assert not np.allclose(after["R"], before["R"], atol=1e-12, rtol=0)  # the refined pose is the one scored
    with pytest.raises(ValueError, match="pose_refinement"):
        run_benchmark(benchmark, None, {"matcher": "gt_dense", "num": 400}, out,
                      BenchmarkOptions(metrics_only=True, progress=False, pose_refinement="lm"))


class ListMatcher(PairMatcher):
    """Returns fixed matches, whatever the images."""

    def __init__(self, kpts0, kpts1):
        self.kpts0, self.kpts1 = np.asarray(kpts0, dtype=np.float64), np.asarray(kpts1, dtype=np.float64)

    def match_pair(self, image0, image1) -> Matches:
        return Matches(self.kpts0, self.kpts1, np.ones(len(self.kpts0)), (100, 100), (100, 100))


def test_wxbs_protocol_hand_computed(tmp_path):
    """Rectified-stereo matches fix F = [x]_x, under which a GT row offset dv has distance sqrt(2) |dv|."""
    folder = tmp_path / "wxbs"
    folder.mkdir()
    for name in ("01.png", "02.png"):
        Image.fromarray(texture(100, 100, 0)).save(folder / name)
    distances = np.array([0.5, 1.5, 2.5, 5.5, 14.5])
    corrs = [[10.0 * i, 20.0, 10.0 * i - 3, 20.0 + d / np.sqrt(2)] for i, d in enumerate(distances)]
    write_pairs(folder, "gt_correspondences", [{"image0": "01.png", "image1": "02.png", "corrs_0to1": corrs}])
    rng = np.random.default_rng(0)
    kpts0 = rng.uniform(0, 100, (300, 2))
    kpts1 = kpts0 - np.stack([rng.uniform(1, 30, 300), np.zeros(300)], axis=1)  # random disparities
    result = run_benchmark(
        load_benchmark(folder),
        ListMatcher(kpts0, kpts1),
        {"matcher": "list"},
        tmp_path / "o",
        BenchmarkOptions(),
    )
    # fraction of the 5 GT rows within t px, t = 1..10: 1, 2, 3, 3, 3, 4, 4, 4, 4, 4 (of 5)
    expected = np.array([1, 2, 3, 3, 3, 4, 4, 4, 4, 4]) / 5
    row = result.rows[0]
    assert row["acc_curve"][:10] == pytest.approx(expected) and row["acc_curve"][14:] == [1.0] * 6
    assert result.summary["mAA@10px"] == pytest.approx(100 * expected.mean())
    assert row["mean_epi_err_px"] == pytest.approx(distances.mean(), abs=1e-3)

    failing = run_benchmark(
        load_benchmark(folder), ListMatcher(kpts0[:5], kpts1[:5]), {"matcher": "few"}, tmp_path / "f"
    )
    assert failing.rows[0]["F"] is None and failing.summary["mAA@10px"] == 0.0
    assert failing.summary["num_failed"] == 1


@pytest.fixture
def homography_set(tmp_path) -> tuple[Path, np.ndarray]:
    folder = tmp_path / "planar"
    folder.mkdir()
    image0 = texture(160, 200, seed=3)
    rotation = cv2.getRotationMatrix2D((100, 80), 12, 0.9)
    H_0to1 = np.vstack([rotation, [0, 0, 1]])
    Image.fromarray(image0).save(folder / "a.png")
    Image.fromarray(cv2.warpPerspective(image0, H_0to1, (200, 160))).save(folder / "b.png")
    write_pairs(folder, "homography", [{"image0": "a.png", "image1": "b.png", "H_0to1": H_0to1.tolist()}])
    return folder, H_0to1


def test_homography_benchmark_with_sift(homography_set, tmp_path):
    folder, _ = homography_set
    result = run_benchmark(
        load_benchmark(folder), get_matcher("sift", num=2000), {"matcher": "sift"}, tmp_path / "o"
    )
    row = result.rows[0]
    assert row["num_inliers"] >= 20 and row["err_px"] < 1.0
    assert np.asarray(row["H"]).shape == (3, 3)
    assert result.summary["auc@10px"] > 85.0 and result.summary["num_failed"] == 0

    none = run_benchmark(
        load_benchmark(folder), ListMatcher(np.zeros((2, 2)), np.zeros((2, 2))), {}, tmp_path / "n"
    )
    assert none.rows[0]["err_px"] is None and none.summary["auc@10px"] == 0.0


def test_cli_benchmark(homography_set, tmp_path, capsys):
    folder, _ = homography_set
    out = tmp_path / "cli"
    assert main(["benchmark", str(folder), "--matcher", "sift", "--num", "2000", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "auc@3px" in printed and "a.png" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["matcher"] == "sift" and summary["matcher_config"]["num"] == 2000
    assert (out / "curves.png").stat().st_size > 1000
    args = ["benchmark", str(folder), "--model", "sift", "--output", str(out), "--quiet"]
    assert main([*args, "--num", "2000", "--metrics-only", "--estimator", "poselib"]) == 0
    # other settings never replace the first summary: they go beside it
    assert json.loads((out / "summary.json").read_text()) == summary
    other = json.loads((out / "summary.poselib-3px.json").read_text())
    assert other["estimator"]["method"] == "poselib" and (out / "results.poselib-3px.jsonl").is_file()
    assert main(args) == 2  # default --num 8192 differs from the cached 2000
    assert "another configuration" in capsys.readouterr().err
    assert main([*args, "--option", "bogus=1", "--overwrite"]) == 2
    assert main(["benchmark", str(tmp_path / "nowhere"), "--matcher", "sift", "--output", str(out)]) == 2
    assert "not found" in capsys.readouterr().err


def test_pairs_json_errors(homography_set):
    folder, H_0to1 = homography_set
    write_pairs(folder, "homography", [{"image0": "a.png", "image1": "b.png", "H_0to1": H_0to1[:2].tolist()}])
    with pytest.raises(DatasetFormatError, match="H_0to1' must have shape"):
        load_benchmark(folder)
    write_pairs(folder, "homography", [{"image0": "a.png", "image1": "gone.png", "H_0to1": H_0to1.tolist()}])
    with pytest.raises(ImageReadError, match="gone.png"):
        load_benchmark(folder)
    write_pairs(folder, "unlabeled", [{"image0": "a.png", "image1": "b.png"}])
    with pytest.raises(DatasetFormatError, match="no ground truth"):
        load_benchmark(folder)
    (folder / "pairs.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match="cannot read"):
        load_benchmark(folder)
