"""What a training run is (``TrainConfig``) and how each registered model is trained (``ModelRecipe``).

How registry names map to training (the published recipes, ``experiments/train_*.py`` of romatch):

===========================  =========  ==========  ==========  ============================================
model                        loss       input       resolution  parameter groups (lr per 8 pairs of batch)
===========================  =========  ==========  ==========  ============================================
``roma_outdoor``             RoMa       ImageNet    560 x 560   VGG ``encoder.cnn.*`` 5e-6; rest 1e-4;
``roma_indoor``, ``l2mpp``             normalised              DINOv2 (any name with ``dinov2``) frozen
``tiny_roma_v1_outdoor``     Tiny RoMa  [0, 1]      768 x 1024  everything (XFeat included) 1e-4
===========================  =========  ==========  ==========  ============================================

All: AdamW with weight decay 0.01, ``MultiStepLR`` with one milestone at 90 % of the steps (gamma 0.1),
gradient clipping at norm 0.01, fp16 autocast + ``GradScaler`` (growth interval 1e6, scale floored at 1)
on CUDA. RoMa's ScanNet batches use the certainty weight 0 (``experiments/roma_indoor.py``).
The learning rates scale linearly with the global batch size (romatch: ``STEP_SIZE * lr / 8``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import DensematchError, UnknownModelError


class TrainConfigError(DensematchError, ValueError):
    """A training setting is invalid or does not fit the model."""


@dataclass(frozen=True)
class ParamGroup:
    """Parameters whose names start with one of ``prefixes`` ("" matches all the rest)."""

    name: str  # "backbone" or "main"; --lr sets "main", --lr-backbone sets "backbone"
    prefixes: tuple[str, ...]
    lr_per_8: float  # learning rate for a global batch of 8 pairs


@dataclass(frozen=True)
class ModelRecipe:
    """How one registered model is trained."""

    name: str
    loss: str  # "roma" or "tiny_roma"
    input_norm: str  # "imagenet" (RoMa encoders) or "unit" (images in [0, 1], Tiny RoMa)
    resolution: tuple[int, int]  # default (H, W) of the training pairs
    resolution_multiple: int  # H and W must be multiples of this
    groups: tuple[ParamGroup, ...]  # first matching group wins
    frozen: tuple[str, ...] = ()  # parameters whose names contain one of these are not trained
    build_kwargs: Mapping[str, object] = field(default_factory=dict)  # extra factory arguments for training
    no_certainty_kinds: tuple[str, ...] = ()  # data kinds trained with certainty weight 0


_ROMA_GROUPS = (ParamGroup("backbone", ("encoder.cnn.",), 5e-6), ParamGroup("main", ("",), 1e-4))
_ROMA = dict(
    loss="roma",
    input_norm="imagenet",
    resolution=(560, 560),
    resolution_multiple=14,
    groups=_ROMA_GROUPS,
    frozen=("dinov2",),
    no_certainty_kinds=("scannet",),
)

RECIPES: Mapping[str, ModelRecipe] = MappingProxyType(
    {
        "roma_outdoor": ModelRecipe(name="roma_outdoor", **_ROMA),
        "roma_indoor": ModelRecipe(name="roma_indoor", **_ROMA),
        "l2mpp": ModelRecipe(name="l2mpp", **_ROMA),
        "tiny_roma_v1_outdoor": ModelRecipe(
            name="tiny_roma_v1_outdoor",
            loss="tiny_roma",
            input_norm="unit",
            resolution=(768, 1024),
            resolution_multiple=32,
            groups=(ParamGroup("main", ("",), 1e-4),),
        ),
        # upstream Tiny RoMa v1's recipe with its XFeat pretrained and frozen: only the matchers learn
        # (the factory loads the official XFeat weights when weights=False, i.e. at initialisation)
        "tiny_roma_l2m": ModelRecipe(
            name="tiny_roma_l2m",
            loss="tiny_roma",
            input_norm="unit",
            resolution=(384, 384),
            resolution_multiple=32,
            groups=(ParamGroup("main", ("",), 1e-4),),
            frozen=("xfeat",),
        ),
    }
)


def get_recipe(name: str) -> ModelRecipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UnknownModelError(
            f"no training recipe for model '{name}'; trainable models: {', '.join(sorted(RECIPES))}"
        ) from None


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
    weight_decay: float = 0.01
    lr_milestone: float = 0.9  # fraction of the steps after which the lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    grad_clip: float = 0.01  # max global gradient norm
    amp: str = "auto"  # "auto" (fp16 on CUDA, off on CPU), "off", "fp16", "bf16"
    seed: int = 0
    init: str | None = None  # None = random initialisation, "published" = published weights, else a file
    dinov2_weights: str | None = None  # RoMa models: local DINOv2 file (None = the published one, downloaded)
    num_workers: int = 2  # data-loading processes per training process
    log_every: int = 10  # steps between metrics lines
    checkpoint_every: int = 500  # steps between checkpoints (and at the end)
    progress: bool = True  # show a progress bar

    # fields that may change between a run and its resumption
    RESUMABLE_CHANGES = ("output", "num_workers", "log_every", "checkpoint_every", "progress")

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
        if not 0 < self.lr_milestone <= 1:
            problems.append(f"lr_milestone must be in (0, 1], got {self.lr_milestone}")
        if self.num_workers < 0:
            problems.append(f"num_workers must be >= 0, got {self.num_workers}")
        if problems:
            raise TrainConfigError("; ".join(problems))

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["data"] = list(self.data)
        values["resolution"] = list(self.resolution) if self.resolution else None
        return values

    @classmethod
    def from_dict(cls, values: Mapping) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainConfigError(f"unknown training config fields: {', '.join(unknown)}")
        values = dict(values)
        values["data"] = tuple(values.get("data", ()))
        if values.get("resolution") is not None:
            values["resolution"] = tuple(values["resolution"])
        return cls(**values)

    def differences(self, other: TrainConfig) -> list[str]:
        """Fields (other than the freely changeable ones) in which ``other`` differs from this config."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{k}: {mine[k]!r} -> {theirs[k]!r}"
            for k in mine
            if k not in self.RESUMABLE_CHANGES and mine[k] != theirs[k]
        ]


def resolved_resolution(config: TrainConfig, recipe: ModelRecipe) -> tuple[int, int]:
    """The training (H, W), checked against the model's size constraint."""
    height, width = config.resolution or recipe.resolution
    m = recipe.resolution_multiple
    if height % m or width % m:
        raise TrainConfigError(
            f"{recipe.name} trains at resolutions that are multiples of {m}; got {height}x{width}"
        )
    return height, width


def group_learning_rates(config: TrainConfig, recipe: ModelRecipe) -> dict[str, float]:
    """Learning rate of each parameter group of the recipe for this run's batch size and overrides."""
    published = {g.name: g.lr_per_8 * config.batch_size / 8 for g in recipe.groups}
    rates = dict(published)
    if config.lr is not None and "main" in rates:
        rates = {name: config.lr * published[name] / published["main"] for name in published}
    if config.lr_backbone is not None:
        if "backbone" not in rates:
            raise TrainConfigError(f"{recipe.name} has no separate backbone learning rate; use --lr")
        rates["backbone"] = config.lr_backbone
    return rates
