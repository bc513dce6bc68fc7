"""The files of a training run, written atomically (never half-written, even when interrupted).

``OUTPUT/last.pth``        flat state dict of the model (for ``densematch.load(MODEL, weights=...)``)
``OUTPUT/checkpoint.pth``  everything to resume: model, optimizer, scheduler, grad scaler, step, config
``OUTPUT/config.json``     the :class:`~densematch.train.config.TrainConfig` of the run
``OUTPUT/metrics.jsonl``   one JSON object per logged step (loss, its terms, lr, grad norm, throughput)

All randomness of a run derives from ``(seed, step, rank, sample position)`` (see
:mod:`densematch.train.sampling`), so the step and the config are the whole random state to store.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError
from ..io import atomic_path, atomic_write

WEIGHTS_FILE = "last.pth"
CHECKPOINT_FILE = "checkpoint.pth"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"


def unwrap(model: nn.Module) -> nn.Module:
    """The model itself, also when wrapped in DistributedDataParallel."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The flat state dict of ``model`` on the CPU."""
    return {key: value.detach().cpu() for key, value in unwrap(model).state_dict().items()}


def save_weights(path, model: nn.Module) -> Path:
    """Write the flat state dict of ``model`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(model_state(model), tmp)
    return Path(path)


def save_checkpoint(path, *, model, optimizer, scheduler, scaler, step: int, config: dict) -> Path:
    """Write everything needed to resume at ``step`` to ``path`` atomically."""
    state = {
        "model": model_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "step": int(step),
        "config": config,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no checkpoint to resume from: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign files
        raise WeightsError(f"cannot read the training checkpoint {path}: {exc}") from exc
    missing = [k for k in ("model", "optimizer", "scheduler", "scaler", "step", "config") if k not in state]
    if missing:
        raise WeightsError(f"{path} is not a densematch training checkpoint (lacks {', '.join(missing)})")
    return state


def write_json(path, values: dict) -> None:
    with atomic_write(path, "w") as handle:
        json.dump(values, handle, indent=2, sort_keys=True)
        handle.write("\n")


def truncate_metrics(path, after_step: int) -> None:
    """Drop the metrics lines of steps after ``after_step`` (written by a run that was then resumed)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line)["step"] <= after_step
    ]
    with atomic_write(path, "w") as handle:
        handle.write("".join(line + "\n" for line in kept))
