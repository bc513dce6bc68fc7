"""Training a registered model end to end: recipe, model, data sources, losses, trainer.

>>> from densematch.train import TrainConfig, train
>>> train(TrainConfig(model="tiny_roma_v1_outdoor", data=("images/",), output="runs/tiny", steps=300,
...                   batch_size=4, resolution=(256, 320)))
"""

from __future__ import annotations

from torch import nn

from .config import ModelRecipe, TrainConfig, get_recipe, group_learning_rates, resolved_resolution
from .distributed import DistributedContext, init_distributed, resolve_device, shutdown
from .losses import CountReducer, RomaLoss, RomaLossConfig, TinyRomaLoss
from .sources import TrainingSource, open_source
from .targets import TargetConfig
from .trainer import Trainer, TrainResult


def make_loss(
    recipe: ModelRecipe, source: TrainingSource, count_reducer: CountReducer | None = None
) -> nn.Module:
    """The published loss of ``recipe`` for one data source."""
    targets = TargetConfig(source=source.targets)
    if recipe.loss == "tiny_roma":
        return TinyRomaLoss(targets=targets, count_reducer=count_reducer)
    if recipe.loss == "roma":
        ce_weight = 0.0 if source.kind in recipe.no_certainty_kinds else RomaLossConfig.ce_weight
        return RomaLoss(RomaLossConfig(ce_weight=ce_weight), targets=targets, count_reducer=count_reducer)
    raise ValueError(f"unknown loss '{recipe.loss}' in the recipe of {recipe.name}")


def build_model(config: TrainConfig, recipe: ModelRecipe, device) -> nn.Module:
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
    model = load(config.model, device=device, weights=weights, **kwargs)
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
    recipe = get_recipe(config.model)
    resolution = resolved_resolution(config, recipe)
    sources = [open_source(spec, resolution, seed=config.seed) for spec in config.data]
    if model is None:
        model = build_model(config, recipe, context.device if context else resolve_device(None))
    else:
        freeze(model, recipe.frozen)
    return Trainer(
        model,
        sources,
        config,
        loss_for=lambda source, reducer: make_loss(recipe, source, reducer),
        groups=recipe.groups,
        rates=group_learning_rates(config, recipe),
        input_norm=recipe.input_norm,
        context=context,
    )


def train(
    config: TrainConfig, *, resume: bool = False, device: str | None = None, model: nn.Module | None = None
) -> TrainResult:
    """Train ``config.model`` (or the given ``model``, with that name's recipe) as ``config`` says.

    Joins the DDP process group when started by ``torchrun`` and leaves it at the end.
    """
    get_recipe(config.model)  # fail on an unknown name before joining a process group
    context = init_distributed(device)
    try:
        return make_trainer(config, model=model, context=context).fit(resume=resume)
    finally:
        shutdown(context)
