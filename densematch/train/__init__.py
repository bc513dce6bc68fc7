"""Training any registered model that meets the contract: deterministic data streams, a resumable DDP trainer.

``densematch train MODEL --data DIR --steps N --output OUT`` on the command line; in Python
:func:`train` with a :class:`TrainConfig`. Each model's published recipe (loss, supervision, optimiser and
schedule) is declared by the model (:mod:`densematch.models.contract`); see
:mod:`densematch.train.distributed` for multi-GPU runs.
"""

from .config import TrainConfig, get_recipe
from .run import train
from .trainer import Trainer, TrainResult

__all__ = ["TrainConfig", "TrainResult", "Trainer", "get_recipe", "train"]
