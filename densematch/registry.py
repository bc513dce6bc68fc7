"""The table of named models: name -> factory, published weight files, description.

The table is static data (no decorators filling a global at import time); factories are named by
import path and imported only when a model is built, so ``import densematch`` stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .errors import UnknownModelError


@dataclass(frozen=True)
class WeightFile:
    """One published checkpoint file."""

    url: str  # the URL as published by the authors
    file_name: str  # name in the torch hub cache (``<hub>/checkpoints/<file_name>``)
    sha256: str | None = None  # checked after download when known
    mirrors: tuple[str, ...] = ()  # further URLs tried in order when the first fails
    key_prefixes_to_strip: tuple[str, ...] = ()  # e.g. ("module.",) for DDP-saved files


@dataclass(frozen=True)
class ModelEntry:
    """One named model: what kind of matcher it is (how the tools use it), how to build and train it.

    ``kind`` is one of :data:`densematch.models.contract.KINDS` ("dense", "matches", "classical"); see
    :mod:`densematch.models.contract` for what each kind's model offers.
    """

    name: str
    factory: str  # "module:function"; the function takes (device, weights=None, ...)
    description: str
    kind: str = "dense"
    weights: Mapping[str, WeightFile] = field(default_factory=dict)  # role ("matcher", "dinov2") -> file
    recipe: str | None = None  # "module:ATTRIBUTE" of its TrainingRecipe; None = not trainable
    weights_note: str = ""  # where the published weights are when code cannot fetch them (shown in errors)
    sfm_options: Mapping[str, object] = field(default_factory=dict)  # options match-pairs uses unless overridden

    def __post_init__(self):
        from .models.contract import KINDS

        if self.kind not in KINDS:
            raise ValueError(f"model '{self.name}': kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def training_recipe(self):
        """The model's :class:`~densematch.models.contract.TrainingRecipe` (imported on demand)."""
        if self.recipe is None:
            trainable = ", ".join(e.name for e in _ENTRIES if e.recipe is not None)
            raise UnknownModelError(f"model '{self.name}' cannot be trained; trainable models: {trainable}")
        module_name, attribute = self.recipe.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def build(self, *args, **kwargs):
        module_name, func_name = self.factory.split(":")
        return getattr(importlib.import_module(module_name), func_name)(*args, **kwargs)


_ROMA_STORAGE = "https://github.com/Parskatt/storage/releases/download/roma"
_L2MPP_STORAGE = "https://huggingface.co/datasets/Liangyingping/L2Mpp-checkpoints/resolve/main"

DINOV2_VITL14 = WeightFile(
    url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
    file_name="dinov2_vitl14_pretrain.pth",
    sha256="d5383ea8f4877b2472eb973e0fd72d557c7da5d3611bd527ceeb1d7162cbf428",
)

_RECIPES = "densematch.models.roma.recipe"

_ENTRIES = (
    ModelEntry(
        name="sift",
        factory="densematch.matchers.classical:sift",
        description="OpenCV SIFT + ratio test (classical baseline, no weights)",
        kind="classical",
        # COLMAP's SIFT matching for SfM: RootSIFT, mutual nearest neighbours with Lowe's ratio test
        # (on multiview_sacre_coeur the mutual check triples the 3D points)
        sfm_options={"root_sift": True, "mutual": True},
    ),
    ModelEntry(
        name="roma_outdoor",
        factory="densematch.models.roma.zoo:roma_outdoor",
        description="RoMa trained on MegaDepth (DINOv2 ViT-L/14 + VGG19-BN, GP + transformer decoder)",
        weights={
            "matcher": WeightFile(
                url=f"{_ROMA_STORAGE}/roma_outdoor.pth",
                file_name="roma_outdoor.pth",
                sha256="c7a45c80d41ad788a63c641d1b686d7cb3f297f40097c6f4e75039889e5cc8ba",
            ),
            "dinov2": DINOV2_VITL14,
        },
        recipe=f"{_RECIPES}:ROMA",
    ),
    ModelEntry(
        name="roma_indoor",
        factory="densematch.models.roma.zoo:roma_indoor",
        description="RoMa trained on MegaDepth + ScanNet",
        weights={
            "matcher": WeightFile(url=f"{_ROMA_STORAGE}/roma_indoor.pth", file_name="roma_indoor.pth"),
            "dinov2": DINOV2_VITL14,
        },
        recipe=f"{_RECIPES}:ROMA",
    ),
    ModelEntry(
        name="l2mpp",
        factory="densematch.models.roma.zoo:l2mpp",
        description="L2M++ (ICCV'25): RoMa architecture trained on lifted single-view data, own DINOv2 encoder",
        weights={
            "matcher": WeightFile(
                url=f"{_L2MPP_STORAGE}/l2m%2B%2B_560x560.pth",
                file_name="l2m++_560x560.pth",
                key_prefixes_to_strip=("module.", "model."),
            ),
            "dinov2": WeightFile(
                url=f"{_L2MPP_STORAGE}/dinov2l_distilled.pth",
                file_name="l2mpp_dinov2l_distilled.pth",
                key_prefixes_to_strip=("module.", "model."),
            ),
        },
        recipe=f"{_RECIPES}:ROMA",
    ),
    ModelEntry(
        name="tiny_roma_v1_outdoor",
        factory="densematch.models.roma.zoo:tiny_roma_v1_outdoor",
        description="Tiny RoMa v1: XFeat backbone with coarse/fine conv matchers, CPU-friendly",
        weights={
            "matcher": WeightFile(
                url=f"{_ROMA_STORAGE}/tiny_roma_v1_outdoor.pth", file_name="tiny_roma_v1_outdoor.pth"
            ),
        },
        recipe=f"{_RECIPES}:TINY_ROMA",
    ),
)

MODELS: Mapping[str, ModelEntry] = MappingProxyType({entry.name: entry for entry in _ENTRIES})


def list_models() -> list[str]:
    """Names accepted by :func:`load` (and by ``--model`` / ``--matcher`` on the command line)."""
    return sorted(MODELS)


def get_entry(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model '{name}'; registered models: {', '.join(list_models())}") from None


def load(name: str, device="cpu", **kwargs):
    """Build the registered model ``name`` (with its published weights unless ``weights=`` is given).

    >>> model = densematch.load("tiny_roma_v1_outdoor", device="cpu", weights="my_checkpoint.pth")
    """
    return get_entry(name).build(device, **kwargs)
