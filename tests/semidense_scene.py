"""Helpers of the semi-dense tests: two-view scenes with exact ground truth (a plane seen by two cameras,
homographies; OpenCV pixels) and a simulated DDP all-reduce to check that per-process loss shares add up."""

from __future__ import annotations

import torch
from train_helpers import plane_depth as _plane_depth
from train_helpers import rotation as _rotation

from densematch.conventions import pixel_to_normalized
from densematch.geometry.warps import pixel_grid


def plane_depth(K: torch.Tensor, normal: torch.Tensor, distance: float, height: int, width: int) -> torch.Tensor:
    return torch.as_tensor(_plane_depth(K.numpy(), normal.numpy(), distance, width, height), dtype=torch.float64)


def _inside(uv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return (uv[..., 0] >= -0.5) & (uv[..., 0] <= width - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] <= height - 0.5)


def rotation(rx: float, ry: float, rz: float) -> torch.Tensor:
    return torch.as_tensor(_rotation(rx, ry, rz), dtype=torch.float64)


def plane_pair(height=64, width=80, R=None, t=(0.0, 0.0, 0.0), normal=(0.0, 0.0, 1.0), distance=10.0,
               focal=100.0, batch=1) -> dict:
    """A pair-sample batch (``image0/1 (B, 3, H, W)``, ``depth0/1``, ``K0/1``, ``T_0to1``, ``warp0/valid0``)."""
    K = torch.tensor([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    R = torch.eye(3, dtype=torch.float64) if R is None else R
    t = torch.tensor(t, dtype=torch.float64)
    n0 = torch.tensor(normal, dtype=torch.float64)
    n0 = n0 / n0.norm()
    n1 = R @ n0
    depth0 = plane_depth(K, n0, distance, height, width)
    depth1 = plane_depth(K, n1, distance + float(n1 @ t), height, width)
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3], T[:3, 3] = R, t
    uv = pixel_grid(height, width, dtype=torch.float64).reshape(-1, 2)
    X = torch.cat((uv, torch.ones(len(uv), 1, dtype=torch.float64)), 1) @ torch.linalg.inv(K).T
    X = X * depth0.reshape(-1, 1)
    p = (X @ R.T + t) @ K.T
    uv1 = (p[:, :2] / p[:, 2:]).reshape(height, width, 2)
    valid0 = (p[:, 2] > 0).reshape(height, width) & _inside(uv1, height, width)
    sample = {
        "image0": torch.rand(3, height, width), "image1": torch.rand(3, height, width),
        "depth0": depth0.float(), "depth1": depth1.float(), "K0": K.float(), "K1": K.float(), "T_0to1": T.float(),
        "warp0": pixel_to_normalized(uv1, width, height).float(), "valid0": valid0,
    }
    return {key: value[None].repeat(batch, *([1] * value.ndim)) for key, value in sample.items()}


def homography_pair(H: torch.Tensor, height=64, width=80, batch=1) -> dict:
    """A pair-sample batch with ``H_0to1`` and the matching ``warp0/valid0``."""
    uv = pixel_grid(height, width, dtype=torch.float64).reshape(-1, 2)
    p = torch.cat((uv, torch.ones(len(uv), 1, dtype=torch.float64)), 1) @ H.double().T
    uv1 = (p[:, :2] / p[:, 2:]).reshape(height, width, 2)
    valid0 = _inside(uv1, height, width)
    sample = {"image0": torch.rand(3, height, width), "image1": torch.rand(3, height, width),
              "H_0to1": H.float(), "warp0": pixel_to_normalized(uv1, width, height).float(), "valid0": valid0}
    return {key: value[None].repeat(batch, *([1] * value.ndim)) for key, value in sample.items()}


def without(batch: dict, *keys: str) -> dict:
    return {key: value for key, value in batch.items() if key not in keys}


class SimulatedAllReduce:
    """Stands in for a DDP all-reduce over shards run one after another: a first pass records every
    reduced tensor of each shard, the second returns, call by call, the sum over the shards."""

    def __init__(self):
        self.records: list[list[torch.Tensor]] = []

    def recorder(self):
        record: list[torch.Tensor] = []
        self.records.append(record)

        def reduce(value):
            record.append(value.detach().clone())
            return value

        return reduce

    def summer(self):
        calls = iter(range(1 << 30))

        def reduce(value):
            k = next(calls)
            return sum(record[k] for record in self.records)

        return reduce


def shares_equal_whole(loss_of, whole, shards, leaves):
    """``sum_s loss_of(shard_s, global reduce)`` == ``loss_of(whole, identity)`` in value and gradient."""
    expected = loss_of(whole, None)
    expected_grads = torch.autograd.grad(expected, leaves, allow_unused=True, retain_graph=True)
    reducer = SimulatedAllReduce()
    for shard in shards:
        loss_of(shard, reducer.recorder())
    total = sum(loss_of(shard, reducer.summer()) for shard in shards)
    grads = torch.autograd.grad(total, leaves, allow_unused=True, retain_graph=True)
    assert torch.allclose(total, expected, rtol=1e-5, atol=1e-7), (total.item(), expected.item())
    for got, want in zip(grads, expected_grads, strict=True):
        if want is None:
            assert got is None or got.abs().max() == 0
        else:
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)
