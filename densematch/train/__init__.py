"""Training the RoMa family: published losses, deterministic data streams, a resumable DDP trainer.

``densematch train MODEL --data DIR --steps N --output OUT`` on the command line; in Python
:func:`train` with a :class:`TrainConfig`. See :mod:`densematch.train.config` for how each registered
model is trained and :mod:`densematch.train.distributed` for multi-GPU runs.
"""

from .config import RECIPES, ModelRecipe, TrainConfig, get_recipe
from .losses import LossOutput, RomaLoss, RomaLossConfig, TinyRomaLoss, TinyRomaLossConfig
from .run import train
from .trainer import Trainer, TrainResult

__all__ = [
    "RECIPES",
    "LossOutput",
    "ModelRecipe",
    "RomaLoss",
    "RomaLossConfig",
    "TinyRomaLoss",
    "TinyRomaLossConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "get_recipe",
    "train",
]
