"""PyTorch's own multi-process training: ``torchrun`` environment, process group, reductions.

Single process::

    densematch train tiny_roma_v1_outdoor --data DIR --steps 1000 --output OUT

Many GPUs (one process per GPU; ``--batch-size`` is the global batch, split over the processes)::

    torchrun --nproc_per_node=4 -m densematch train roma_outdoor --data DIR --batch-size 32 ...
    torchrun --nnodes=2 --node_rank=R --master_addr=HOST --nproc_per_node=8 -m densematch train ...

The backend is NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this code created the process group (and destroys it in shutdown)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over all processes (a new tensor; the input is left unchanged)."""
        if not self.is_distributed:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()


def resolve_device(request: str | None, local_rank: int = 0) -> torch.device:
    """``None``/"auto": this process's GPU when CUDA is available, else the CPU."""
    if request in (None, "auto"):
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(request)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init_distributed(device: str | None = None, backend: str | None = None) -> DistributedContext:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1), else run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(device=resolve_device(device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend or ("nccl" if resolved.type == "cuda" else "gloo"))
    return DistributedContext(rank, world_size, local_rank, resolved, owns_group)


def shutdown(context: DistributedContext) -> None:
    """Leave the process group when :func:`init_distributed` created it (not one the caller made)."""
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()
