"""The one contract every learned model meets, whatever kind of matcher it is.

A registry entry (:mod:`densematch.registry`) says which *kind* of matcher a model is, and the tools use
the model only through that kind's methods:

``dense``    ``match(image0, image1) -> (warp, certainty)`` and ``sample(warp, certainty, num)``, as
             romatch (RoMa, Tiny RoMa, L2M++). Tools sample correspondences from the warp.
``matches``  ``match_images(image0, image1) -> dict`` of correspondences (S2LD, IMAMatch, XFeat):
             ``kpts0 (N, 2)``, ``kpts1 (N, 2)`` float tensors in OpenCV pixels of the images *as given*
             (the model resizes internally and maps back), ``scores (N,)``, and optional extras (for
             example ``reverse``: which image was the query). Images are paths, PIL images or uint8 arrays.
``classical`` the factory returns a ready :class:`~densematch.matchers.PairMatcher` (SIFT); no network.

Every learned model (``nn.Module``) also declares

* ``input_spec``: an :class:`InputSpec` (grey or RGB, normalisation, size multiple). The trainer turns the
  pair-sample images (RGB in ``[0, 1]``) into that form with :func:`prepare_images`;
* ``training_forward(batch) -> predictions``: the training-mode forward. It receives the whole batch, images
  already prepared, *with* its ground truth (``warp0``/``valid0``, and ``depth0/1``, ``K0/1``, ``T_0to1`` or
  ``H_0to1`` where the source has them; see :mod:`densematch.data`), because LoFTR-style models need
  ground-truth matches inside the forward;
* a :class:`TrainingRecipe`, named by the registry entry: the loss (built from an import path, so the
  trainer never branches on a model's name), the supervision it needs, the optimiser/schedule preset;
* optionally ``check_input_size(height, width)``: raises :class:`~densematch.errors.InputShapeError` for a
  network input size the model cannot take beyond ``input_spec.size_multiple`` (IMAMatch's ScanNet model);
  the trainer calls it on the training resolution before any work.

The loss module built by ``recipe.loss`` is called as ``loss(predictions, batch) -> LossOutput``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch is imported by the functions that need it: importing the contract stays cheap
    import torch

KINDS = ("dense", "matches", "classical")

# sum over processes of a tensor of counts (identity in a single process): DDP-exact means
CountReducer = Callable[["torch.Tensor"], "torch.Tensor"]


@dataclass(frozen=True)
class InputSpec:
    """What a network sees."""

    channels: Literal["rgb", "grey"]  # "grey": one channel, 0.299 R + 0.587 G + 0.114 B (OpenCV's weights)
    normalisation: Literal["unit", "imagenet"]  # values in [0, 1], or ImageNet mean/std normalised
    size_multiple: int  # network input height and width must be multiples of this

    def __post_init__(self):
        if self.channels not in ("rgb", "grey"):
            raise ValueError(f"channels must be 'rgb' or 'grey', got {self.channels!r}")
        if self.normalisation not in ("unit", "imagenet"):
            raise ValueError(f"normalisation must be 'unit' or 'imagenet', got {self.normalisation!r}")
        if self.size_multiple < 1:
            raise ValueError(f"size_multiple must be >= 1, got {self.size_multiple}")


_GREY_WEIGHTS = (0.299, 0.587, 0.114)


def prepare_images(images: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in ``[0, 1]`` -> the network input of ``spec`` (``(B, 1 | 3, H, W)``)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB images, got shape {tuple(images.shape)}")
    if spec.channels == "grey":
        weights = images.new_tensor(_GREY_WEIGHTS).view(1, 3, 1, 1)
        images = (images * weights).sum(dim=1, keepdim=True)
    if spec.normalisation == "imagenet":
        from .preprocess import imagenet_normalize

        images = imagenet_normalize(images)
    return images


@dataclass(frozen=True)
class ParamGroup:
    """Parameters whose names start with one of ``prefixes`` ("" matches all the rest)."""

    name: str  # "backbone" or "main"; --lr sets "main", --lr-backbone sets "backbone"
    prefixes: tuple[str, ...]
    lr_per_8: float  # learning rate for a global batch of 8 pairs (scaled linearly with the batch)


@dataclass(frozen=True)
class Schedule:
    """Optimiser and learning-rate schedule preset (AdamW)."""

    weight_decay: float = 0.01
    milestones: tuple[float, ...] = (0.9,)  # fractions of the run's steps at which the lr is multiplied by gamma
    gamma: float = 0.1
    warmup_steps: int = 0  # linear warm-up from warmup_ratio * lr to lr over this many steps
    warmup_ratio: float = 0.1
    grad_clip: float = 0.01  # max global gradient norm
    warmup_batch: int | None = None  # warmup_steps are for this global batch (LoFTR: WARMUP_STEP / SCALING)
    warmup_fraction: float = 0.0  # > 0: warm up over this fraction of the run's steps instead (epoch-based)

    def warmup_for(self, total_steps: int, batch_size: int) -> int:
        """Warm-up length in steps of a run of ``total_steps`` steps with global batch ``batch_size``."""
        if self.warmup_fraction > 0:
            return int(self.warmup_fraction * total_steps)
        if self.warmup_batch is not None:
            return int(self.warmup_steps * self.warmup_batch / max(batch_size, 1))
        return self.warmup_steps


@dataclass(frozen=True)
class TrainingRecipe:
    """How one registered model is trained (its published recipe)."""

    loss: str  # "module:factory"; factory(recipe, source_kind: str, count_reducer) -> loss module
    targets: tuple[str, ...]  # batch keys the training forward and loss need besides the images
    resolution: tuple[int, int]  # default (H, W) of the training pairs
    groups: tuple[ParamGroup, ...]  # first matching group wins
    schedule: Schedule = field(default_factory=Schedule)
    frozen: tuple[str, ...] = ()  # parameters whose names contain one of these are not trained
    build_kwargs: Mapping[str, object] = field(default_factory=dict)  # extra factory arguments for training
    loss_options: Mapping[str, object] = field(default_factory=dict)  # passed to the loss factory
    presets: Mapping[str, Mapping[str, object]] = field(default_factory=dict)  # named variants (--preset)

    def build_loss(self, source_kind: str, count_reducer: CountReducer | None = None):
        module_name, func_name = self.loss.split(":")
        factory = getattr(importlib.import_module(module_name), func_name)
        return factory(self, source_kind, count_reducer)


@dataclass
class LossOutput:
    """A loss value and its named terms (detached, for logging)."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


def identity_reducer(counts: torch.Tensor) -> torch.Tensor:
    return counts


def masked_mean(values: torch.Tensor, mask: torch.Tensor, reduce: CountReducer | None = None) -> torch.Tensor:
    """``sum(values[mask]) / count`` with the count summed over processes (0 when nothing is masked in)."""
    import torch

    reduce = reduce or identity_reducer
    count = reduce(mask.sum().to(values.dtype).detach())
    return torch.where(count > 0, (values * mask).sum() / count.clamp(min=1), values.sum() * 0)
