"""S2LD's published training recipe (``configs/s2ld/outdoor/*.py``, ``scripts/train/train_outdoor_ds_e2e.sh``).

AdamW, learning rate 8e-3 at a canonical batch of 64 pairs scaled linearly with the true batch (1e-3 per
8 pairs), weight decay 0.1; linear warm-up from 0.1 x over 1875 steps at batch 64 (LoFTR divides the step
count by the batch scaling: ``1875 * 64 / batch`` steps); MultiStepLR gamma 0.5 at the configs' epoch
milestones, here fractions of the 30-epoch run; gradient clipping at norm 0.5; grey 640 x 640 input.

Presets (``dataclasses.replace(RECIPE, **RECIPE.presets[name])``):

``train``  the training config ``s2ld_kp_ds_dense.py`` (the default): dense focal, keypoint /
           repeatability / score weights 0.1, sparse-depth weight 1, milestones 6, 10, ..., 26.
``test``   the config shipped with the test weights ``s2ld_kp_ds.py``: positives-only focal, keypoint 0.05,
           repeatability 1, score 1, sparse-depth 0.2, milestones 6, 10, ..., 26, 29 (the later ones,
           32-38, lie beyond 30 epochs and never fire).
``pretrain_detector``  detector pre-training (upstream ``KPNet``, ``configs/kpnet/outdoor/kpnet.py``):
           only the keypoint terms (keypoint 0.5, repeatability 1, score 1), milestones 8, 12, ..., 28;
           the matching layers are frozen. Start the end-to-end run from its checkpoint (upstream
           ``--kpnet_ckpt_path``, a partial load).
``freeze_detector`` / ``freeze_backbone``  the training recipe with ``keypoint_detector.*`` /
           ``backbone.*`` frozen (upstream ``--freeze_detector`` / ``--freeze_backbone``).
"""

from __future__ import annotations

from types import MappingProxyType

from ..contract import ParamGroup, Schedule, TrainingRecipe

_EPOCHS = 30


def _milestones(*epochs: int) -> tuple[float, ...]:
    return tuple(epoch / _EPOCHS for epoch in epochs if epoch <= _EPOCHS)


def _schedule(*epochs: int) -> Schedule:
    return Schedule(
        weight_decay=0.1,
        milestones=_milestones(*epochs),
        gamma=0.5,
        warmup_steps=1875,
        warmup_ratio=0.1,
        warmup_batch=64,
        grad_clip=0.5,
    )


TRAIN_LOSS = MappingProxyType(dict(sparse_spvs=False, keypoint_weight=0.1, repeatability_weight=0.1,
                                   score_weight=0.1, sparse_weight=1.0))
TEST_LOSS = MappingProxyType(dict(sparse_spvs=True, keypoint_weight=0.05, repeatability_weight=1.0,
                                  score_weight=1.0, sparse_weight=0.2))
DETECTOR_LOSS = MappingProxyType(dict(sparse_spvs=True, coarse_weight=0.0, fine_weight=0.0, sparse_weight=0.0,
                                      keypoint_weight=0.5, repeatability_weight=1.0, score_weight=1.0))
MATCHING_LAYERS = ("feature_adjuster.", "s2ld_coarse.", "fine_preprocess.", "s2ld_fine.")

_TRAIN_SCHEDULE = _schedule(6, 10, 14, 18, 22, 26)

RECIPE = TrainingRecipe(
    loss="densematch.models.s2ld.loss:build_loss",
    targets=("warp0", "valid0"),  # plus depth0/1, K0/1, T_0to1 or H_0to1 where the source has them
    resolution=(640, 640),
    groups=(ParamGroup("main", ("",), 8e-3 * 8 / 64),),
    schedule=_TRAIN_SCHEDULE,
    loss_options=TRAIN_LOSS,
    presets=MappingProxyType({
        "train": MappingProxyType(dict(loss_options=TRAIN_LOSS, schedule=_TRAIN_SCHEDULE)),
        "test": MappingProxyType(dict(loss_options=TEST_LOSS,
                                      schedule=_schedule(6, 10, 14, 18, 22, 26, 29, 32, 35, 38))),
        "pretrain_detector": MappingProxyType(dict(loss_options=DETECTOR_LOSS, frozen=MATCHING_LAYERS,
                                                   schedule=_schedule(8, 12, 16, 20, 24, 28))),
        "freeze_detector": MappingProxyType(dict(frozen=("keypoint_detector.",))),
        "freeze_backbone": MappingProxyType(dict(frozen=("backbone.",))),
    }),
)
