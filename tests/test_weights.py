"""Checkpoint loading: strict key checks with readable errors, local paths, cache, offline errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from densematch.errors import WeightsError
from densematch.registry import WeightFile
from densematch.weights import cached_file, fetch_all, load_strict, read_state_dict


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)


def test_strict_load_round_trip_and_optional_counters(tmp_path):
    source, target = Net(), Net()
    state = source.state_dict()
    state["bn.running_mean"].normal_()
    del state["bn.num_batches_tracked"]
    torch.save(state, tmp_path / "w.pth")
    load_strict(target, read_state_dict(tmp_path / "w.pth", what="net"), what="net")
    assert torch.equal(target.bn.running_mean, state["bn.running_mean"])
    assert torch.equal(target.conv.weight, source.conv.weight)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("conv.weight"), "missing key(s), e.g. 'conv.weight'"),
        (lambda s: s.__setitem__("extra.weight", torch.zeros(1)), "unexpected key(s), e.g. 'extra.weight'"),
        (lambda s: s.__setitem__("conv.bias", torch.zeros(5)), "conv.bias: checkpoint (5,) vs model (4,)"),
    ],
)
def test_strict_load_names_the_bad_key(edit, message):
    state = Net().state_dict()
    edit(state)
    with pytest.raises(WeightsError, match="does not fit") as info:
        load_strict(Net(), state, what="net")
    assert message in str(info.value)


def test_training_checkpoint_is_unwrapped_and_prefixes_stripped():
    state = {f"module.{k}": v for k, v in Net().state_dict().items()}
    spec = WeightFile(url="http://invalid/x.pth", file_name="x.pth", key_prefixes_to_strip=("module.",))
    out = read_state_dict({"model": state, "n": 3}, what="net", spec=spec)
    assert set(out) == set(Net().state_dict())


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        read_state_dict(tmp_path / "nope.pth", what="net")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read net weights"):
        read_state_dict(tmp_path / "bad.pth", what="net")


def test_offline_error_names_file_url_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = WeightFile(url="http://127.0.0.1:9/roma_outdoor.pth", file_name="roma_outdoor.pth")
    with pytest.raises(WeightsError) as info:
        cached_file(spec, what="roma_outdoor", timeout=2)
    text = str(info.value)
    assert "roma_outdoor.pth" in text and spec.url in text and "weights='/path/to/roma_outdoor.pth'" in text
    # once the file is in the cache no download is attempted
    target = tmp_path / "hub" / "checkpoints" / "roma_outdoor.pth"
    target.parent.mkdir(parents=True)
    torch.save(Net().state_dict(), target)
    assert cached_file(spec, what="roma_outdoor") == target


def test_legacy_non_zip_checkpoint_is_read_without_memory_mapping(tmp_path):
    state = {"w": torch.arange(4.0)}
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    torch.save(state, tmp_path / "zip.pth")
    for name in ("legacy.pth", "zip.pth"):
        loaded = read_state_dict(tmp_path / name, what="test")
        assert torch.equal(loaded["w"], state["w"]), name


def test_fetch_all_reports_every_missing_file_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    files = {"matcher": WeightFile(url="http://127.0.0.1:9/a.pth", file_name="a.pth"),
             "dinov2": WeightFile(url="http://127.0.0.1:9/b.pth", file_name="b.pth")}
    with pytest.raises(WeightsError) as info:
        fetch_all(files, {"matcher": tmp_path / "nope.pth"}, what="m", download=False, note="see the README")
    message = str(info.value)
    assert "2 weight file(s) missing" in message and "nope.pth: file not found" in message
    assert "'b.pth'" in message and "--dinov2-weights" in message and message.endswith("see the README")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "b.pth").write_bytes(b"")
    (tmp_path / "mine.pth").write_bytes(b"")
    found = fetch_all(files, {"matcher": tmp_path / "mine.pth"}, what="m", download=False)
    assert found == {"matcher": tmp_path / "mine.pth", "dinov2": tmp_path / "hub" / "checkpoints" / "b.pth"}
