"""Mixed precision helpers: autocast only on CUDA, and only with an explicit dtype."""

from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` on CUDA with ``dtype``; a no-op elsewhere or when ``dtype`` is None (fp32)."""
    if dtype is None or torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def no_autocast(device: torch.device):
    """Disable autocast (for the float32 parts: GP solve, refiner output convs)."""
    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", enabled=False)
