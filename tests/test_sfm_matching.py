"""Matching a collection into features.h5 / matches.h5: matcher kinds, resuming, interruption, workers."""

from __future__ import annotations

import sys

import h5py
import numpy as np
import pytest
from sfm_synthetic import BatchingFakeDenseMatcher, FakeDenseMatcher, apply_h, make_collection

from densematch.cli import main
from densematch.errors import DensematchError, ImageReadError, MissingDependencyError
from densematch.sfm import h5io
from densematch.sfm.keypoints import GridConfig
from densematch.sfm.matching import MatchConfig, match_collection
from densematch.sfm.pairs import pairs_exhaustive, write_pairs
from densematch.sfm.workers import MatcherSpec

QUIET = MatchConfig(progress=False)


def h5_datasets(path) -> dict[str, tuple]:
    """Every dataset of an HDF5 file: name -> (dtype, shape, raw bytes)."""
    found = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            found[name] = (data.dtype.str, data.shape, np.ascontiguousarray(data).tobytes())

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    return found


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    folder = tmp_path_factory.mktemp("views")
    views = make_collection(folder, count=4)
    return folder, views, pairs_exhaustive(sorted(views))


def _fake_spec(views, made: list | None = None, cls=FakeDenseMatcher, **kwargs) -> MatcherSpec:
    def factory(device):
        matcher = cls(views, **kwargs)
        if made is not None:
            made.append(matcher)
        return matcher

    return MatcherSpec("fake-dense", factory=factory, kind="dense")


def _check_matches_follow_homographies(out, views, pairs, tolerance):
    with h5py.File(out / "features.h5") as features, h5py.File(out / "matches.h5") as matches:
        for name0, name1 in pairs:
            kp0, kp1 = features[name0]["keypoints"][()], features[name1]["keypoints"][()]
            matches0 = matches[h5io.pair_key(name0, name1)]["matches0"][()]
            scores0 = matches[h5io.pair_key(name0, name1)]["matching_scores0"][()]
            assert matches0.dtype == np.int32 and scores0.dtype == np.float32 and len(matches0) == len(kp0)
            assert matches0.min() >= -1 and matches0.max() < len(kp1)
            assert (scores0[matches0 < 0] == 0).all() and (scores0[matches0 >= 0] > 0).all()
            i0 = np.flatnonzero(matches0 >= 0)
            H = views[name1][0] @ np.linalg.inv(views[name0][0])
            error = np.linalg.norm(apply_h(H, kp0[i0].astype(np.float64)) - kp1[matches0[i0]], axis=1)
            assert len(i0) > 20 and np.percentile(error, 90) < tolerance


def test_dense_pipeline_writes_hloc_files(tmp_path, collection):
    folder, views, pairs = collection
    outputs = match_collection(folder, pairs, tmp_path, _fake_spec(views), QUIET)
    assert outputs.num_pairs == outputs.num_new_pairs == 6 and outputs.num_images == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dense_matches.h5", "features.h5", "matches.h5"]
    assert h5io.list_feature_names(outputs.features) == sorted(views)
    with h5py.File(outputs.features) as handle:
        for name, (_, size) in views.items():
            group = handle[name]
            keypoints = group["keypoints"][()]
            assert keypoints.dtype == np.float32 and keypoints.ndim == 2 and keypoints.shape[1] == 2
            assert group["scores"].dtype == np.float32 and len(group["scores"]) == len(keypoints)
            assert tuple(group["image_size"][()]) == size
            assert (keypoints >= -0.5).all() and (keypoints < np.array(size) - 0.5).all()
    config = GridConfig()
    _check_matches_follow_homographies(tmp_path, views, pairs, 2 * config.max_error + 1)
    assert h5io.file_config(outputs.matches)["grid"]["cell_size"] == config.cell_size


def test_resumed_dense_run_equals_a_single_run_and_skips_done_pairs(tmp_path, collection):
    folder, views, pairs = collection
    match_collection(folder, pairs, tmp_path / "once", _fake_spec(views), QUIET)
    match_collection(folder, pairs[:3], tmp_path / "twice", _fake_spec(views), QUIET)
    made: list = []
    reversed_pairs = [(b, a) if i == 0 else (a, b) for i, (a, b) in enumerate(pairs)]  # a done pair, reversed
    outputs = match_collection(folder, reversed_pairs, tmp_path / "twice", _fake_spec(views, made), QUIET)
    assert outputs.num_new_pairs == 3 and made[0].calls == 3
    once = h5_datasets(tmp_path / "once" / "matches.h5")
    twice = h5_datasets(tmp_path / "twice" / "matches.h5")
    flipped, stored = (
        h5io.pair_key(*pairs[0]),
        h5io.pair_key(*reversed_pairs[0]),
    )  # listed reversed the 2nd time
    assert {k for k in once if not k.startswith(flipped)} == {k for k in twice if not k.startswith(stored)}
    for name in once:
        if not name.startswith(flipped):
            assert once[name] == twice[name], name
    assert h5_datasets(tmp_path / "once" / "features.h5") == h5_datasets(tmp_path / "twice" / "features.h5")

    again = match_collection(folder, pairs, tmp_path / "once", _fake_spec(views, made), QUIET)
    assert again.num_new_pairs == 0 and len(made) == 1  # nothing to match: no matcher was built


def test_interrupted_run_keeps_finished_pairs_and_resumes_to_the_same_result(tmp_path, collection):
    folder, views, pairs = collection
    config = MatchConfig(progress=False, chunk_size=1, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        match_collection(folder, pairs, tmp_path / "run", _fake_spec(views, fail_after=3), config)
    raw = tmp_path / "run" / "dense_matches.h5"
    assert len(h5io.list_pairs(raw)) == 3  # the 3 finished pairs were committed on the way out
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["dense_matches.h5"]  # no temp files
    outputs = match_collection(folder, pairs, tmp_path / "run", _fake_spec(views), config)
    assert outputs.num_new_pairs == 3
    match_collection(folder, pairs, tmp_path / "clean", _fake_spec(views), QUIET)
    for name in ("features.h5", "matches.h5", "dense_matches.h5"):
        assert h5_datasets(tmp_path / "run" / name) == h5_datasets(tmp_path / "clean" / name), name


def test_batched_matching_gives_the_same_files(tmp_path, collection):
    folder, views, pairs = collection
    made: list = []
    config = MatchConfig(progress=False, batch_size=2, chunk_size=4)
    match_collection(
        folder, pairs, tmp_path / "batched", _fake_spec(views, made, BatchingFakeDenseMatcher), config
    )
    assert made[0].batches == [2, 2, 2]  # chunks of 4 and 2 pairs, in batches of 2
    match_collection(folder, pairs, tmp_path / "single", _fake_spec(views), QUIET)
    assert h5_datasets(tmp_path / "batched" / "matches.h5") == h5_datasets(tmp_path / "single" / "matches.h5")


def test_sift_pipeline_keeps_detected_keypoints(tmp_path, collection):
    folder, views, pairs = collection
    outputs = match_collection(folder, pairs, tmp_path, MatcherSpec("sift", num=500), QUIET)
    assert not (tmp_path / "dense_matches.h5").exists()
    with h5py.File(outputs.features) as handle:
        for name in views:
            group = handle[name]
            assert group["descriptors"].shape == (128, len(group["keypoints"]))
            assert 100 < len(group["keypoints"]) <= 520  # OpenCV keeps ties at the cap
            assert (group["scores"][()] > 0).all()  # SIFT responses
    _check_matches_follow_homographies(tmp_path, views, pairs, 2.0)

    # resuming: the first run detects 3 images and matches 2 pairs, the second only the rest
    spec = MatcherSpec("sift", num=500)
    match_collection(folder, pairs[:2], tmp_path / "resumed", spec, QUIET)
    assert len(h5io.list_feature_names(tmp_path / "resumed" / "features.h5")) == 3
    outputs = match_collection(folder, pairs, tmp_path / "resumed", spec, QUIET)
    assert outputs.num_new_pairs == len(pairs) - 2
    for name in ("features.h5", "matches.h5"):
        assert h5_datasets(tmp_path / name) == h5_datasets(tmp_path / "resumed" / name)


def test_settings_guard_overwrite_and_bad_input(tmp_path, collection):
    folder, views, pairs = collection
    match_collection(folder, pairs[:1], tmp_path, MatcherSpec("sift", num=300), QUIET)
    with pytest.raises(DensematchError, match="different settings"):
        match_collection(folder, pairs, tmp_path, MatcherSpec("sift", num=400), QUIET)
    overwrite = MatchConfig(progress=False, overwrite=True)
    outputs = match_collection(folder, pairs, tmp_path, MatcherSpec("sift", num=400), overwrite)
    assert outputs.num_new_pairs == len(pairs)
    with pytest.raises(ImageReadError, match="absent.png"):
        match_collection(folder, [("view_00.png", "absent.png")], tmp_path, MatcherSpec("sift"), QUIET)
    with pytest.raises(DensematchError, match="empty"):
        match_collection(folder, [], tmp_path, MatcherSpec("sift"), QUIET)


def test_workers_without_ray_give_a_clear_error(tmp_path, collection, monkeypatch):
    folder, views, pairs = collection
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    config = MatchConfig(progress=False, workers=2)
    with pytest.raises(MissingDependencyError, match=r"densematch\[distributed\]"):
        match_collection(folder, pairs, tmp_path, MatcherSpec("sift", num=300), config)


def test_two_ray_workers_write_byte_identical_datasets(tmp_path, collection, capsys):
    pytest.importorskip("ray")
    folder, views, pairs = collection
    pairs_file = write_pairs(tmp_path / "pairs.txt", pairs)
    common = ["match-pairs", str(folder), "--pairs", str(pairs_file), "--quiet"]
    common += ["--matcher", "sift", "--num", "400"]
    assert main([*common, "--output", str(tmp_path / "one")]) == 0
    assert main([*common, "--output", str(tmp_path / "two"), "--workers", "2"]) == 0
    assert "6 pairs (6 new" in capsys.readouterr().out
    for name in ("features.h5", "matches.h5"):
        one, two = h5_datasets(tmp_path / "one" / name), h5_datasets(tmp_path / "two" / name)
        assert len(one) > 0 and one == two, name


def test_bad_matcher_names_and_weights_are_reported_before_any_work(tmp_path):
    from densematch.errors import UnknownModelError, WeightsError

    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        MatcherSpec("nope")
    with pytest.raises(DensematchError, match="no weights"):
        MatcherSpec("sift", weights="x.pth")
    with pytest.raises(WeightsError, match="not found"):
        MatcherSpec("roma_outdoor", weights=str(tmp_path / "absent.pth"))
    trained = tmp_path / "trained.pth"
    trained.write_bytes(b"")
    for name in ("imamatch_megadepth", "s2ld"):  # nothing published, but trainable: a file is accepted
        assert MatcherSpec(name, weights=str(trained)).weights == str(trained)


def test_worker_build_errors_surface_from_ready_for_ray_actors(collection):
    from densematch.sfm.workers import MatchWorker

    folder, _, _ = collection

    def broken(device):
        raise DensematchError("cannot build the matcher")

    spec = MatcherSpec("broken", factory=broken, kind="dense")
    with pytest.raises(DensematchError, match="cannot build"):
        MatchWorker(spec, str(folder))
    worker = MatchWorker(spec, str(folder), defer_errors=True)  # as a Ray actor is built
    with pytest.raises(DensematchError, match="cannot build"):
        worker.ready()
