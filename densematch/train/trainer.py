"""The training loop for any model that meets the contract (:mod:`densematch.models.contract`).

One step: the batch's images are prepared per the model's ``input_spec``, ``model.training_forward(batch)``
runs with the ground truth in the batch, the source's loss module turns its predictions into a
:class:`~densematch.models.contract.LossOutput`. As romatch's ``train_step``: forward under autocast
when mixed precision is on (fp16 on CUDA by default), loss in float32, scaled backward, unscale, clip the
global gradient norm, optimiser step, scaler update (scale floored at 1), scheduler step.
Under DDP every process computes its share of the loss of the global batch (the counts of the masked
means are summed over processes), so the gradients equal those of one process on the whole batch.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, default_collate

from ..errors import DensematchError
from ..models.contract import CountReducer, LossOutput, ParamGroup, Schedule, prepare_images
from .checkpoint import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    save_checkpoint,
    save_weights,
    truncate_metrics,
    unwrap,
    write_json,
)
from .config import TrainConfig
from .distributed import DistributedContext
from .sampling import PairStream, StepBatches, TrainingPairs, step_seed
from .sources import TrainingSource

# (source, count_reducer) -> loss module; the reducer sums counts over processes (None for one process)
LossForSource = Callable[[TrainingSource, CountReducer | None], nn.Module]


@dataclass
class TrainResult:
    """What a finished run left behind."""

    step: int  # optimiser steps done
    weights: Path  # OUTPUT/last.pth
    checkpoint: Path  # OUTPUT/checkpoint.pth
    metrics: Path  # OUTPUT/metrics.jsonl
    last_loss: float | None  # global loss of the last step run by this call (None when none ran)
    skipped: int = 0  # unreadable pairs passed over by this call (this process's batches)


class TrainingForward(nn.Module):
    """``forward(batch) = model.training_forward(batch)``, so that DDP wraps the contract's training forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict):
        return self.model.training_forward(batch)


def prepared_batch(batch: Mapping, model: nn.Module) -> dict:
    """The batch with ``image0``/``image1`` turned into the network input of ``model.input_spec``."""
    spec = model.input_spec
    return {**batch, "image0": prepare_images(batch["image0"], spec), "image1": prepare_images(batch["image1"], spec)}


def lr_factor(step: int, schedule: Schedule, total_steps: int) -> float:
    """Learning-rate multiplier after ``step`` optimiser steps: linear warm-up, then MultiStepLR."""
    factor = 1.0
    if step < schedule.warmup_steps:
        factor = schedule.warmup_ratio + (1 - schedule.warmup_ratio) * step / schedule.warmup_steps
    milestones = [max(int(m * total_steps), 1) for m in schedule.milestones]
    return factor * schedule.gamma ** sum(step >= m for m in milestones)


def build_optimizer(
    model: nn.Module, groups: Sequence[ParamGroup], rates: Mapping[str, float], weight_decay: float
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, grouped by name prefix (first matching group wins)."""
    members: dict[str, list[nn.Parameter]] = {g.name: [] for g in groups}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = next((g for g in groups if any(name.startswith(p) for p in g.prefixes)), None)
        if group is None:
            raise ValueError(f"parameter '{name}' matches no parameter group")
        members[group.name].append(param)
    param_groups = [
        {"params": members[g.name], "lr": rates[g.name], "name": g.name} for g in groups if members[g.name]
    ]
    if not param_groups:
        raise DensematchError("the model has no trainable parameters")
    return torch.optim.AdamW(param_groups, weight_decay=weight_decay)


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of an ``amp`` setting on ``device`` (None = full precision)."""
    if setting == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[setting]


def _to_device(batch: Mapping, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }


class Trainer:
    """Trains ``model`` on ``sources`` with ``loss_for(source)``, writing into ``config.output``.

    Args:
        model: an ``nn.Module`` whose ``forward({"im_A", "im_B"})`` returns ``corresps`` in training mode;
            parameters with ``requires_grad=False`` are frozen.
        sources: opened ``--data`` arguments; with several, steps alternate between them.
        config: the run; ``config.output`` receives the files of :mod:`densematch.train.checkpoint`.
        loss_for: the loss module for a source (e.g. RoMa's certainty weight is 0 on ScanNet), given the
            count reducer it must use for its means.
        groups / rates: parameter groups and their learning rates.
        schedule: weight decay, learning-rate schedule and gradient clipping.
        effective: every resolved setting of the run (resolution, rates, schedule), written to config.json.
        context: the process's place in a DDP run (default: a single process on the model's device).
    """

    def __init__(
        self,
        model: nn.Module,
        sources: Sequence[TrainingSource],
        config: TrainConfig,
        *,
        loss_for: LossForSource,
        groups: Sequence[ParamGroup],
        rates: Mapping[str, float],
        schedule: Schedule,
        effective: Mapping | None = None,
        context: DistributedContext | None = None,
    ):
        if not sources:
            raise DensematchError("no training data given")
        device = next(model.parameters()).device
        self.context = context or DistributedContext(device=device)
        self.config = config
        self.model = model
        self.sources = list(sources)
        reducer = self.context.all_reduce_sum if self.context.is_distributed else None
        self.losses = [loss_for(source, reducer) for source in self.sources]
        self.schedule = schedule
        self.effective = dict(effective or {})
        self.output = Path(config.output)
        self.optimizer = build_optimizer(model, groups, rates, schedule.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, schedule, config.steps)
        )
        self.amp_dtype = amp_dtype(config.amp, self.context.device)
        use_scaler = self.amp_dtype == torch.float16 and self.context.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(
            self.context.device.type, enabled=use_scaler, growth_interval=1_000_000
        )
        self.step = 0
        self.skipped = 0  # unreadable pairs passed over (see TrainingPairs)

    # ------------------------------------------------------------------ files
    def _paths(self) -> dict[str, Path]:
        return {
            name: self.output / file
            for name, file in (
                ("weights", WEIGHTS_FILE),
                ("checkpoint", CHECKPOINT_FILE),
                ("config", CONFIG_FILE),
                ("metrics", METRICS_FILE),
            )
        }

    def resume(self) -> int:
        """Load ``OUTPUT/checkpoint.pth`` (same config required) and return its step."""
        state = load_checkpoint(self._paths()["checkpoint"])
        saved = TrainConfig.from_dict(state["config"])
        changed = saved.differences(self.config)
        if changed:
            raise DensematchError("cannot resume with a different configuration: " + "; ".join(changed))
        unwrap(self.model).load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        return self.step

    def save(self) -> None:
        """Write last.pth and checkpoint.pth (main process only)."""
        if self.context.is_main:
            paths = self._paths()
            save_checkpoint(
                paths["checkpoint"],
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                scaler=self.scaler,
                step=self.step,
                config=self.config.to_dict(),
            )
            save_weights(paths["weights"], self.model)
        self.context.barrier()

    # ------------------------------------------------------------------ loop
    def _loader(self, stop: int) -> DataLoader:
        cfg, ctx = self.config, self.context
        streams = [PairStream(len(s.pairs), cfg.seed, i, s.pairs.weights) for i, s in enumerate(self.sources)]
        batches = StepBatches(streams, cfg.batch_size, self.step, stop, ctx.rank, ctx.world_size)
        return DataLoader(
            TrainingPairs([s.pairs for s in self.sources], cfg.seed, strict=cfg.strict),
            batch_sampler=batches,
            num_workers=cfg.num_workers,
            collate_fn=default_collate,
            pin_memory=ctx.device.type == "cuda",
            persistent_workers=False,
        )

    def _train_step(self, network: nn.Module, batch: dict) -> LossOutput:
        ctx = self.context
        torch.manual_seed(step_seed(self.config.seed, self.step, ctx.rank))
        network.train()
        self.optimizer.zero_grad(set_to_none=True)
        autocast = (
            torch.autocast(ctx.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else nullcontext()
        )
        with autocast:
            predictions = network(prepared_batch(batch, self.model))
        loss = self.losses[int(batch["source"][0])](predictions, batch)
        # DDP averages gradients over processes; the loss is this process's share of the global mean
        self.scaler.scale(loss.total * ctx.world_size).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        loss.terms["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, self.schedule.grad_clip).detach()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scaler.is_enabled() and self.scaler.get_scale() < 1.0:
            self.scaler.update(1.0)  # romatch floors the loss scale at 1
        self.scheduler.step()
        self.step += 1
        return loss

    def _global_values(self, loss: LossOutput) -> dict[str, float]:
        names = ["loss", *(k for k in loss.terms if k != "grad_norm")]
        values = torch.stack([loss.total.detach().float(), *(loss.terms[k].float() for k in names[1:])])
        values = self.context.all_reduce_sum(values).tolist()
        out = dict(zip(names, values, strict=True))
        out["grad_norm"] = float(loss.terms["grad_norm"])
        return out

    def fit(self, resume: bool = False, until: int | None = None) -> TrainResult:
        """Run (or continue, with ``resume``) until ``config.steps`` and write the run's files.

        ``until`` stops earlier, after that step (with a checkpoint), as an interrupted run would; the
        learning-rate schedule still spans ``config.steps``.
        """
        paths = self._paths()
        if resume:
            self.resume()
        elif paths["checkpoint"].exists():
            raise DensematchError(
                f"{self.output} already holds a training run; pass --resume (resume=True) to continue it "
                "or choose another output folder"
            )
        if self.context.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            write_json(paths["config"], {**self.config.to_dict(), "effective": self.effective})
            if resume:
                truncate_metrics(paths["metrics"], self.step)
            else:
                paths["metrics"].unlink(missing_ok=True)
        network = TrainingForward(self.model)
        if self.context.is_distributed:
            device_ids = [self.context.device] if self.context.device.type == "cuda" else None
            network = nn.parallel.DistributedDataParallel(network, device_ids=device_ids)
        stop = self.config.steps if until is None else min(until, self.config.steps)
        last_loss = None
        if self.step < stop:
            last_loss = self._run(network, paths["metrics"], stop)
        else:
            self.save()
        return TrainResult(self.step, paths["weights"], paths["checkpoint"], paths["metrics"], last_loss,
                           self.skipped)

    def _run(self, network: nn.Module, metrics_path: Path, stop: int) -> float:
        cfg, ctx = self.config, self.context
        progress = None
        if cfg.progress and ctx.is_main:
            from tqdm import tqdm

            progress = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        started, window_start, window_steps = time.perf_counter(), time.perf_counter(), 0
        values: dict[str, float] = {}
        rate = None  # pairs/s over the steps since the last log line (shown on the progress bar between logs)
        for batch in self._loader(stop):
            self.skipped += int(batch.pop("skipped").sum())
            loss = self._train_step(network, _to_device(batch, ctx.device))
            values = self._global_values(loss)
            window_steps += 1
            if not math.isfinite(values["loss"]):
                raise DensematchError(f"the loss became {values['loss']} at step {self.step}")
            last = self.step == stop
            if self.step % cfg.log_every == 0 or last:
                now = time.perf_counter()
                rate = window_steps * cfg.batch_size / max(now - window_start, 1e-9)
                values["pairs_per_s"] = rate
                window_start, window_steps = now, 0
                if ctx.is_main:
                    record = {
                        "step": self.step,
                        "source": int(batch["source"][0]),
                        "lr": [g["lr"] for g in self.optimizer.param_groups],
                        "elapsed_s": now - started,
                        **values,
                    }
                    with open(metrics_path, "a") as handle:
                        handle.write(json.dumps(record) + "\n")
            if progress is not None:
                progress.update(1)
                elapsed = time.perf_counter() - window_start
                current = window_steps * cfg.batch_size / elapsed if window_steps else rate
                progress.set_postfix(
                    loss=f"{values['loss']:.4g}",
                    lr=f"{self.optimizer.param_groups[0]['lr']:.3g}",
                    pairs_s="-" if current is None else f"{current:.3g}",
                    refresh=False,
                )
            if self.step % cfg.checkpoint_every == 0 or last:
                self.save()
        if progress is not None:
            progress.close()
        if ctx.is_main and metrics_path.exists():
            from .curve import write_loss_curve

            write_loss_curve(metrics_path, self.output / "loss_curve.png")
        return values.get("loss")
