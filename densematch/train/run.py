"""Training a registered model end to end: its recipe, the model, data sources, losses, trainer.

Nothing here knows a model by name: the registry entry names the recipe, the recipe names the loss, the
model declares its input and its training forward (:mod:`densematch.models.contract`).

>>> from densematch.train import TrainConfig, train
>>> train(TrainConfig(model="tiny_roma_v1_outdoor", data=("images/",), output="runs/tiny", steps=300,
...                   batch_size=4, resolution=(256, 320)))
"""

from __future__ import annotations

import dataclasses

from torch import nn

from ..models.contract import TrainingRecipe
from .config import (
    TrainConfig,
    TrainConfigError,
    get_recipe,
    group_learning_rates,
    resolved_resolution,
    resolved_schedule,
)
from .distributed import DistributedContext, init_distributed, resolve_device, shutdown
from .sources import open_source
from .trainer import Trainer, TrainResult


def build_model(config: TrainConfig, recipe: TrainingRecipe, device) -> nn.Module:
    """The registered model, randomly initialised (or from ``config.init``), with frozen parts frozen.

    ``config.init``: None = random initialisation (the factory contract ``weights=False``; frozen
    pretrained parts such as DINOv2 still load their own published weights), "published" = the
    published checkpoint, else a weights file.
    """
    from ..registry import load

    weights = {None: False, "published": None}.get(config.init, config.init)
    kwargs = dict(recipe.build_kwargs)
    if config.dinov2_weights is not None:
        kwargs["dinov2_weights"] = config.dinov2_weights
    try:
        model = load(config.model, device=device, weights=weights, **kwargs)
    except TypeError as exc:
        raise TrainConfigError(f"cannot build '{config.model}' for training: {exc}") from exc
    freeze(model, recipe.frozen)
    return model


def freeze(model: nn.Module, patterns) -> None:
    """Stop training every parameter whose name contains one of ``patterns``."""
    for name, param in model.named_parameters():
        if any(pattern in name for pattern in patterns):
            param.requires_grad_(False)


def make_trainer(
    config: TrainConfig, *, model: nn.Module | None = None, context: DistributedContext | None = None
) -> Trainer:
    """A :class:`Trainer` for ``config``: the recipe of ``config.model``, its data sources and losses.

    ``model``: train this module (with that name's recipe) instead of building the registered model.
    ``context``: this process's place in a DDP run (default: one process on the model's device).
    """
    recipe = get_recipe(config.model, config.preset)
    if model is None:
        model = build_model(config, recipe, context.device if context else resolve_device(None))
    else:
        freeze(model, recipe.frozen)
    resolution = resolved_resolution(config, recipe, model.input_spec.size_multiple)
    check_size = getattr(model, "check_input_size", None)  # optional part of the model contract
    if callable(check_size):
        check_size(*resolution)
    sources = [open_source(spec, resolution, seed=config.seed) for spec in config.data]
    rates = group_learning_rates(config, recipe)
    schedule = resolved_schedule(config, recipe)
    effective = {
        "resolution": list(resolution),
        "learning_rates": rates,
        "schedule": dataclasses.asdict(schedule),
        "input": dataclasses.asdict(model.input_spec),
        "loss": recipe.loss,
        "loss_options": dict(recipe.loss_options),
        "frozen": list(recipe.frozen),
        "sources": [{"spec": s.spec, "kind": s.kind, "pairs": len(s.pairs)} for s in sources],
    }
    return Trainer(
        model,
        sources,
        config,
        loss_for=lambda source, reducer: recipe.build_loss(source.kind, reducer),
        groups=recipe.groups,
        rates=rates,
        schedule=schedule,
        effective=effective,
        context=context,
    )


def train(
    config: TrainConfig, *, resume: bool = False, device: str | None = None, model: nn.Module | None = None
) -> TrainResult:
    """Train ``config.model`` (or the given ``model``, with that name's recipe) as ``config`` says.

    Joins the DDP process group when started by ``torchrun`` and leaves it at the end.
    """
    get_recipe(config.model, config.preset)  # fail on an unknown name or preset before joining a process group
    context = init_distributed(device)
    try:
        return make_trainer(config, model=model, context=context).fit(resume=resume)
    finally:
        shutdown(context)
