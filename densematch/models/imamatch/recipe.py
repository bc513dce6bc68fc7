"""IMAMatch's published training recipes (``train_megadepth.py``, ``train_scannet.py``).

Both: AdamW with learning rate ``6e-3 / 64`` per pair of the global batch (3.75e-4 at the published
2 x 2 GPUs; 7.5e-4 per 8 pairs), MultiStepLR gamma 0.5 at epoch milestones (here fractions of the 30-epoch
run), gradient clipping at norm 10, grey input, 30 epochs.

``MEGADEPTH``  832 x 832 (long side 832, padded square upstream), weight decay 1e-2, linear warm-up from
               0.1 x over the first 3 of 30 epochs (``LinearLR(0.1, 1)``), milestones 5, 9, 13, 17, 21.
``SCANNET``    480 x 640, weight decay 1e-2, no warm-up, milestones 3, 6, 9, 12, 17, 20, 23, 26, 29; the
               model is built with ``fix_bug_for_scannet`` as the published ScanNet model.

Upstream warms up with a separate AdamW whose moments are dropped when the main optimiser takes over after
the warm-up epochs; we keep one optimiser (the schedule is the same).
"""

from __future__ import annotations

from ..contract import ParamGroup, Schedule, TrainingRecipe

_EPOCHS = 30
_GROUPS = (ParamGroup("main", ("",), 6e-3 / 64 * 8),)
_LOSS = "densematch.models.imamatch.loss:build_loss"


def _milestones(*epochs: int) -> tuple[float, ...]:
    return tuple(epoch / _EPOCHS for epoch in epochs)


MEGADEPTH = TrainingRecipe(
    loss=_LOSS,
    targets=("warp0", "valid0"),
    resolution=(832, 832),
    groups=_GROUPS,
    schedule=Schedule(
        weight_decay=1e-2,
        milestones=_milestones(5, 9, 13, 17, 21),
        gamma=0.5,
        warmup_fraction=3 / _EPOCHS,
        warmup_ratio=0.1,
        grad_clip=10.0,
    ),
)

SCANNET = TrainingRecipe(
    loss=_LOSS,
    targets=("warp0", "valid0"),
    resolution=(480, 640),
    groups=_GROUPS,
    schedule=Schedule(
        weight_decay=1e-2,
        milestones=_milestones(3, 6, 9, 12, 17, 20, 23, 26, 29),
        gamma=0.5,
        warmup_steps=0,
        grad_clip=10.0,
    ),
)
