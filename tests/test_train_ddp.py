"""DDP on CPU (gloo, 2 processes) trains exactly like one process on the same global batch."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from train_helpers import write_image_folder

from densematch.train.distributed import DistributedContext


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, image_dir: str, output: str) -> None:
    from test_train import make_trainer, tiny_config

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        context = DistributedContext(rank=rank, world_size=world_size, device=torch.device("cpu"))
        make_trainer(tiny_config(image_dir, output, steps=3, batch_size=4), context=context).fit()
    finally:
        dist.destroy_process_group()


def _losses(path) -> list[dict]:
    keep = ("step", "loss", "delta_regression_loss_4", "delta_certainty_loss_8", "grad_norm")
    return [
        {k: v for k, v in json.loads(line).items() if k in keep} for line in path.read_text().splitlines()
    ]


def test_two_gloo_processes_match_one_process(tmp_path):
    from test_train import make_trainer, tiny_config

    image_dir = tmp_path / "images"
    write_image_folder(image_dir, count=4, size=(96, 80))
    torch.set_num_threads(1)
    single = make_trainer(tiny_config(image_dir, tmp_path / "single", steps=3, batch_size=4)).fit()
    mp.spawn(_worker, args=(2, _free_port(), str(image_dir), str(tmp_path / "ddp")), nprocs=2, join=True)
    one, two = _losses(single.metrics), _losses(tmp_path / "ddp" / "metrics.jsonl")
    assert [m["step"] for m in two] == [1, 2, 3]
    for a, b in zip(one, two, strict=True):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), key
    weights = [torch.load(p / "last.pth", weights_only=True) for p in (tmp_path / "single", tmp_path / "ddp")]
    for key, value in weights[0].items():
        assert torch.allclose(value, weights[1][key], rtol=1e-5, atol=1e-6), key


TORCHRUN_SCRIPT = """
import sys
import torch
sys.path.insert(0, {tests!r})
from test_train import tiny_config
from train_helpers import StandInTinyRoma
from densematch.train import train

torch.set_num_threads(1)
torch.manual_seed(0)
train(tiny_config({images!r}, {output!r}, steps=3, batch_size=4), model=StandInTinyRoma())
"""


@pytest.mark.slow
def test_torchrun_launch_matches_one_process(tmp_path):
    """The documented launch: torchrun sets RANK/WORLD_SIZE and densematch.train joins the group."""
    import subprocess
    import sys
    from pathlib import Path

    from test_train import make_trainer, tiny_config

    image_dir = tmp_path / "images"
    write_image_folder(image_dir, count=4, size=(96, 80))
    tests = Path(__file__).resolve().parent
    script = tmp_path / "launch.py"
    script.write_text(
        TORCHRUN_SCRIPT.format(tests=str(tests), images=str(image_dir), output=str(tmp_path / "ddp"))
    )
    env = {**os.environ, "PYTHONPATH": str(tests.parent), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    single = make_trainer(tiny_config(image_dir, tmp_path / "single", steps=3, batch_size=4), seed=0).fit()
    for a, b in zip(_losses(single.metrics), _losses(tmp_path / "ddp" / "metrics.jsonl"), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)


def test_init_distributed_without_torchrun_runs_alone(monkeypatch):
    from densematch.train.distributed import init_distributed, resolve_device, shutdown

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = init_distributed("cpu")
    assert (context.rank, context.world_size, context.is_main, context.owns_group) == (0, 1, True, False)
    value = torch.tensor([1.0, 2.0])
    assert context.all_reduce_sum(value) is value
    shutdown(context)  # nothing to leave
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 3)
