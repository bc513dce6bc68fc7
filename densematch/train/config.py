"""What a training run is (``TrainConfig``) and how it meets the recipe of the model it trains.

Each registered model declares its published recipe (a :class:`~densematch.models.contract.TrainingRecipe`
named by its registry entry: loss, supervision, parameter groups, optimiser/schedule preset, named
presets); this module only resolves a run's settings against it: every ``None`` field of
:class:`TrainConfig` means "the recipe's value".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import DensematchError
from ..models.contract import Schedule, TrainingRecipe


class TrainConfigError(DensematchError, ValueError):
    """A training setting is invalid or does not fit the model."""


def get_recipe(name: str, preset: str | None = None) -> TrainingRecipe:
    """The training recipe of the registered model ``name`` (with the named ``preset`` applied)."""
    from ..registry import get_entry

    recipe = get_entry(name).training_recipe()
    if preset is None:
        return recipe
    if preset not in recipe.presets:
        known = ", ".join(sorted(recipe.presets)) or "none"
        raise TrainConfigError(f"model '{name}' has no training preset '{preset}'; presets: {known}")
    changes = dict(recipe.presets[preset])
    for key in ("loss_options", "build_kwargs"):
        if key in changes:
            changes[key] = {**getattr(recipe, key), **changes[key]}
    return dataclasses.replace(recipe, **changes)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Written to ``OUTPUT/config.json``; ``--resume`` requires the same values."""

    model: str  # registry name (densematch.list_models())
    data: tuple[str, ...]  # data sources, "[kind:]PATH" (see densematch.train.sources)
    output: str  # folder for last.pth, checkpoint.pth, config.json, metrics.jsonl
    steps: int  # optimiser steps; 0 writes the initial model
    batch_size: int = 8  # global batch (pairs per step over all processes)
    resolution: tuple[int, int] | None = None  # (H, W); None = the recipe's
    lr: float | None = None  # main learning rate; None = lr_per_8 * batch_size / 8
    lr_backbone: float | None = None  # backbone learning rate; None = published ratio to lr
    preset: str | None = None  # a named variant of the model's recipe (e.g. S2LD "train" / "test" loss weights)
    weight_decay: float | None = None  # None = the recipe's (also for the next four)
    lr_milestones: tuple[float, ...] | None = None  # fractions of the steps at which the lr is multiplied by lr_gamma
    lr_gamma: float | None = None
    warmup_steps: int | None = None
    grad_clip: float | None = None  # max global gradient norm
    amp: str = "auto"  # "auto" (fp16 on CUDA, off on CPU), "off", "fp16", "bf16"
    seed: int = 0
    init: str | None = None  # None = random initialisation, "published" = published weights, else a file
    dinov2_weights: str | None = None  # RoMa models: local DINOv2 file (None = the published one, downloaded)
    num_workers: int = 2  # data-loading processes per training process
    log_every: int = 10  # steps between metrics lines
    checkpoint_every: int = 500  # steps between checkpoints (and at the end)
    progress: bool = True  # show a progress bar
    strict: bool = False  # stop at an unreadable pair (default: skip it with a warning, count it)

    # fields that may change between a run and its resumption
    RESUMABLE_CHANGES = ("output", "num_workers", "log_every", "checkpoint_every", "progress", "strict")

    def __post_init__(self):
        problems = []
        if not self.data:
            problems.append("no training data given")
        if self.steps < 0:
            problems.append(f"steps must be >= 0, got {self.steps}")
        for name in ("batch_size", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "lr_backbone"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if self.amp not in ("auto", "off", "fp16", "bf16"):
            problems.append(f"amp must be auto, off, fp16 or bf16, got {self.amp!r}")
        if self.lr_milestones is not None and not all(0 < m <= 1 for m in self.lr_milestones):
            problems.append(f"lr_milestones must be fractions in (0, 1], got {list(self.lr_milestones)}")
        for name in ("weight_decay", "warmup_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr_gamma", "grad_clip"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_workers < 0:
            problems.append(f"num_workers must be >= 0, got {self.num_workers}")
        if problems:
            raise TrainConfigError("; ".join(problems))

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["data"] = list(self.data)
        values["resolution"] = list(self.resolution) if self.resolution else None
        values["lr_milestones"] = list(self.lr_milestones) if self.lr_milestones is not None else None
        return values

    @classmethod
    def from_dict(cls, values: Mapping) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainConfigError(f"unknown training config fields: {', '.join(unknown)}")
        values = dict(values)
        values["data"] = tuple(values.get("data", ()))
        for key in ("resolution", "lr_milestones"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def differences(self, other: TrainConfig) -> list[str]:
        """Fields (other than the freely changeable ones) in which ``other`` differs from this config."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{k}: {mine[k]!r} -> {theirs[k]!r}"
            for k in mine
            if k not in self.RESUMABLE_CHANGES and mine[k] != theirs[k]
        ]


def resolved_resolution(config: TrainConfig, recipe: TrainingRecipe, size_multiple: int) -> tuple[int, int]:
    """The training (H, W): the run's or the recipe's, checked against the model's input size multiple."""
    height, width = config.resolution or recipe.resolution
    if height % size_multiple or width % size_multiple:
        raise TrainConfigError(
            f"{config.model} trains at resolutions that are multiples of {size_multiple}; got {height}x{width}"
        )
    return height, width


def resolved_schedule(config: TrainConfig, recipe: TrainingRecipe) -> Schedule:
    """The recipe's optimiser/schedule preset with the run's overrides."""
    overrides = {
        "weight_decay": config.weight_decay,
        "milestones": config.lr_milestones,
        "gamma": config.lr_gamma,
        "warmup_steps": config.warmup_steps,
        "grad_clip": config.grad_clip,
    }
    # a batch-scaled or fractional warm-up of the recipe becomes a step count of this run
    warmup = recipe.schedule.warmup_for(config.steps, config.batch_size)
    schedule = dataclasses.replace(recipe.schedule, warmup_steps=warmup, warmup_batch=None, warmup_fraction=0.0)
    return dataclasses.replace(schedule, **{k: v for k, v in overrides.items() if v is not None})


def group_learning_rates(config: TrainConfig, recipe: TrainingRecipe) -> dict[str, float]:
    """Learning rate of each parameter group of the recipe for this run's batch size and overrides."""
    published = {g.name: g.lr_per_8 * config.batch_size / 8 for g in recipe.groups}
    rates = dict(published)
    if config.lr is not None and "main" in rates:
        rates = {name: config.lr * published[name] / published["main"] for name in published}
    if config.lr_backbone is not None:
        if "backbone" not in rates:
            raise TrainConfigError(f"{config.model} has no separate backbone learning rate; use --lr")
        rates["backbone"] = config.lr_backbone
    return rates
