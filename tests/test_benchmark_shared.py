"""The benchmark on the real sets of ../shared/data (skipped when the folder is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from densematch.eval import BenchmarkOptions, load_benchmark, run_benchmark
from densematch.geometry import apply_homography
from densematch.matchers import Matches, PairMatcher, get_matcher

LABELLED = {
    "scannet_superglue": ("relative_pose", 15),
    "kitti_odometry_00": ("relative_pose", 15),
    "oxford_graf": ("homography", 5),
    "oxford_boat": ("homography", 5),
    "wxbs_subset": ("gt_correspondences", 11),
}


@pytest.mark.parametrize("name", sorted(LABELLED))
def test_shared_sets_load(shared_data, name):
    bench = load_benchmark(shared_data / name)
    assert (bench.task, len(bench.pairs)) == LABELLED[name]
    assert all(p.image0.is_file() and p.image1.is_file() for p in bench.pairs)
    assert len({p.pair_id for p in bench.pairs}) == len(bench.pairs)


class OracleHomographyMatcher(PairMatcher):
    """Matches that follow the GT homography exactly."""

    def __init__(self, bench):
        self.gt = {str(p.image1): p.gt["H_0to1"] for p in bench.pairs}

    def match_pair(self, image0, image1) -> Matches:
        grid = np.stack(np.meshgrid(np.linspace(0, 700, 10), np.linspace(0, 600, 10)), axis=-1).reshape(-1, 2)
        return Matches(
            grid, apply_homography(self.gt[str(image1)], grid), np.ones(100), (800, 640), (800, 640)
        )


def test_oracle_matches_score_perfectly(shared_data, tmp_path):
    bench = load_benchmark(shared_data / "oxford_graf")
    result = run_benchmark(
        bench, OracleHomographyMatcher(bench), {"matcher": "oracle"}, tmp_path, BenchmarkOptions()
    )
    assert result.summary["auc@3px"] > 99.9 and result.summary["num_failed"] == 0


def test_sift_recovers_kitti_poses(shared_data, tmp_path):
    """The convention check of shared/data/README.md section 3.1, through the benchmark (2 pairs)."""
    bench = load_benchmark(shared_data / "kitti_odometry_00").subset(2)
    result = run_benchmark(
        bench, get_matcher("sift", num=2000), {"matcher": "sift"}, tmp_path, BenchmarkOptions()
    )
    for row in result.rows:
        assert row["err_R_deg"] < 1.0 and row["err_t_deg"] < 5.0
