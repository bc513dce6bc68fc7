"""The published training recipes of the RoMa family (romatch ``experiments/train_*.py``).

===========================  ==========  ==========  ============================================
model                        loss        resolution  parameter groups (lr per 8 pairs of batch)
===========================  ==========  ==========  ============================================
``roma_outdoor``,            RoMa        560 x 560   VGG ``encoder.cnn.*`` 5e-6; rest 1e-4;
``roma_indoor``, ``l2mpp``                           DINOv2 (any name with ``dinov2``) frozen
``tiny_roma_v1_outdoor``     Tiny RoMa   768 x 1024  everything (XFeat included) 1e-4
===========================  ==========  ==========  ============================================

All: AdamW with weight decay 0.01, ``MultiStepLR`` with one milestone at 90 % of the steps (gamma 0.1),
gradient clipping at norm 0.01, fp16 autocast + ``GradScaler`` on CUDA. RoMa's ScanNet batches use the
certainty weight 0 (``experiments/roma_indoor.py``). Learning rates scale linearly with the global batch.
Ground truth per data source: the published depth GT on MegaDepth/ScanNet, depth GT restricted to the
engine's own ``valid0`` on synthetic pairs, the exact warp on homography pairs (:mod:`.targets`).
"""

from __future__ import annotations

from ..contract import CountReducer, ParamGroup, Schedule, TrainingRecipe

# ground-truth source of the losses (TargetConfig.source) per training-data kind
TARGETS_BY_SOURCE = {
    "megadepth": "depth",
    "scannet": "depth",
    "synthetic": "both",
    "synthetic-live": "both",
    "homography": "warp",
}
NO_CERTAINTY_SOURCES = ("scannet",)  # RoMa indoor: certainty weight 0 on ScanNet batches


def roma_loss(recipe: TrainingRecipe, source_kind: str, count_reducer: CountReducer | None = None):
    """The RoMa loss for one data source (certainty weight 0 on ScanNet)."""
    from .loss import RomaLoss, RomaLossConfig
    from .targets import TargetConfig

    ce_weight = 0.0 if source_kind in NO_CERTAINTY_SOURCES else RomaLossConfig.ce_weight
    return RomaLoss(RomaLossConfig(ce_weight=ce_weight), TargetConfig(source=TARGETS_BY_SOURCE[source_kind]),
                    count_reducer)


def tiny_roma_loss(recipe: TrainingRecipe, source_kind: str, count_reducer: CountReducer | None = None):
    """The Tiny RoMa loss for one data source."""
    from .loss import TinyRomaLoss
    from .targets import TargetConfig

    return TinyRomaLoss(targets=TargetConfig(source=TARGETS_BY_SOURCE[source_kind]), count_reducer=count_reducer)


_TARGETS = ("warp0", "valid0", "depth0", "depth1", "K0", "K1", "T_0to1")  # depth ones where the source has them
_SCHEDULE = Schedule(weight_decay=0.01, milestones=(0.9,), gamma=0.1, grad_clip=0.01)

ROMA = TrainingRecipe(
    loss=f"{__name__}:roma_loss",
    targets=_TARGETS,
    resolution=(560, 560),
    groups=(ParamGroup("backbone", ("encoder.cnn.",), 5e-6), ParamGroup("main", ("",), 1e-4)),
    schedule=_SCHEDULE,
    frozen=("dinov2",),
)

TINY_ROMA = TrainingRecipe(
    loss=f"{__name__}:tiny_roma_loss",
    targets=_TARGETS,
    resolution=(768, 1024),
    groups=(ParamGroup("main", ("",), 1e-4),),
    schedule=_SCHEDULE,
)
