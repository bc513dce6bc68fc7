"""hloc-format HDF5 files and their atomic, checkpointed writing (densematch.sfm.h5io)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from densematch.errors import DensematchError
from densematch.sfm import h5io
from densematch.sfm.h5io import AtomicH5Appender, ImageFeatures, PairMatches


def test_pair_key_replaces_slashes_inside_names_like_hloc():
    assert h5io.pair_key("a.jpg", "b.jpg") == "a.jpg/b.jpg"
    assert h5io.pair_key("seq1/a.jpg", "seq2/x/b.jpg") == "seq1-a.jpg/seq2-x-b.jpg"


def test_features_round_trip_with_nested_names(tmp_path):
    path = tmp_path / "features.h5"
    rng = np.random.default_rng(0)
    written = {
        "top.jpg": ImageFeatures(rng.uniform(0, 50, (7, 2)), rng.uniform(size=7), (64, 48)),
        "sub/dir/im.png": ImageFeatures(
            rng.uniform(0, 50, (3, 2)), np.ones(3), (30, 20), rng.normal(size=(128, 3))
        ),
    }
    h5io.rewrite(
        path, [lambda h, n=n, f=f: h5io.write_features(h, n, f) for n, f in written.items()], {"a": 1}, False
    )
    assert h5io.list_feature_names(path) == sorted(written)
    for name, expected in written.items():
        got = h5io.read_features(path, name, with_descriptors=True)
        assert got.keypoints.dtype == np.float32 and got.keypoints.shape == expected.keypoints.shape
        np.testing.assert_array_equal(got.keypoints, expected.keypoints)
        np.testing.assert_array_equal(got.scores, expected.scores)
        assert got.image_size == expected.image_size
        if expected.descriptors is None:
            assert got.descriptors is None
        else:
            np.testing.assert_array_equal(got.descriptors, expected.descriptors)
    assert h5io.file_config(path) == {"a": 1}
    with pytest.raises(DensematchError, match="no keypoints"):
        h5io.read_features(path, "absent.jpg")


def test_image_features_validates_shapes():
    with pytest.raises(ValueError, match="scores"):
        ImageFeatures(np.zeros((3, 2)), np.zeros(2), (4, 4))
    with pytest.raises(ValueError, match="descriptors"):
        ImageFeatures(np.zeros((3, 2)), np.zeros(3), (4, 4), np.zeros((3, 128)))


def test_matches0_round_trip_and_reversed_lookup(tmp_path):
    indices = np.array([[0, 4], [2, 1], [5, 0]])
    scores = np.array([0.9, 0.5, 0.25])
    matches = PairMatches.from_indices(indices, scores, num0=6)
    assert matches.matches0.tolist() == [4, -1, 1, -1, -1, 0]
    assert matches.matches0.dtype == np.int32
    back, back_scores = matches.indices()
    np.testing.assert_array_equal(back, indices)
    np.testing.assert_allclose(back_scores, scores)

    path = tmp_path / "matches.h5"
    h5io.rewrite(path, [lambda h: h5io.write_matches(h, "x/a.jpg", "b.jpg", matches)], {}, False)
    with h5py.File(path) as handle:
        assert set(handle["x-a.jpg/b.jpg"]) == {"matches0", "matching_scores0"}
    assert h5io.list_pairs(path) == [("x-a.jpg", "b.jpg")]
    forward, _ = h5io.read_matches(path, "x/a.jpg", "b.jpg")
    reverse, reverse_scores = h5io.read_matches(path, "b.jpg", "x/a.jpg")
    np.testing.assert_array_equal(reverse, forward[:, ::-1])
    np.testing.assert_allclose(reverse_scores, scores)
    with pytest.raises(DensematchError, match="not in"):
        h5io.read_matches(path, "b.jpg", "c.jpg")


def _writer(name: str, value: float):
    return lambda handle: handle.create_dataset(name, data=np.full(3, value))


def test_appender_commits_in_batches_and_resumes(tmp_path):
    path = tmp_path / "out.h5"
    appender = AtomicH5Appender(path, {"v": 1}, every=2, seconds=1e9)
    appender.add(_writer("a", 1))
    assert not path.exists()  # nothing committed yet
    appender.add(_writer("b", 2))
    with h5py.File(path) as handle:
        assert sorted(handle) == ["a", "b"]
    appender.add(_writer("c", 3))
    appender.commit()
    appender = AtomicH5Appender(path, {"v": 1}, every=10)  # a resumed run appends to the same file
    appender.add(_writer("d", 4))
    appender.commit()
    with h5py.File(path) as handle:
        assert sorted(handle) == ["a", "b", "c", "d"]
        assert handle["d"][0] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]  # no temporary files left


def test_an_interrupted_commit_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "out.h5"
    appender = AtomicH5Appender(path, {}, every=1)
    appender.add(_writer("a", 1))
    before = path.read_bytes()

    def crash(handle):
        handle.create_dataset("half", data=np.zeros(10))
        raise KeyboardInterrupt

    appender = AtomicH5Appender(path, {}, every=100)
    appender.add(_writer("b", 2))
    appender.add(crash)
    with pytest.raises(KeyboardInterrupt):
        appender.commit()
    assert path.read_bytes() == before
    with h5py.File(path) as handle:
        assert list(handle) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]


def test_check_config_refuses_a_file_written_differently(tmp_path):
    path = tmp_path / "out.h5"
    h5io.check_config(path, {"matcher": "sift"}, "hint")  # no file yet: fine
    h5io.rewrite(path, [], {"matcher": "sift", "num": 10}, False)
    h5io.check_config(path, {"matcher": "sift", "num": 10}, "hint")
    with pytest.raises(DensematchError, match=r"num: 10 in the file vs 20 now\); use --overwrite"):
        h5io.check_config(path, {"matcher": "sift", "num": 20}, "use --overwrite")


def test_unreadable_files_give_clear_errors(tmp_path):
    broken = tmp_path / "features.h5"
    broken.write_bytes(b"not an hdf5 file")
    with pytest.raises(DensematchError, match="cannot read"):
        h5io.list_feature_names(broken)
    with pytest.raises(DensematchError, match="not found"):
        h5io.read_matches(tmp_path / "absent.h5", "a", "b")
