"""Typed, frozen configuration of S2LD: the architecture (as upstream's MegaDepth test config) and the
inference settings (resize, thresholds, filters)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..semidense.coarse_matching import CoarseMatchingConfig
from ..semidense.resnet_fpn import ResNetFPNConfig
from ..semidense.transformer import TransformerConfig


@dataclass(frozen=True)
class DetectorConfig:
    """Keypoint detector: one keypoint per 1/8 cell from coarse (1/8) and fine (1/2) features."""

    coarse_dims: tuple[int, int] = (256, 128)  # 3x3 conv-BN-ReLU channels on the 1/8 map (input: coarse d_model)
    fine_dims: tuple[int, int] = (128, 64)  # 5x5 then 3x3 stride-2 conv-BN-ReLU on the 1/2 map (to 1/8)
    offset_dims: tuple[int, ...] = (256, 128, 2)  # offset head; the last layer is conv + tanh, no BN
    score_dims: tuple[int, ...] = (256, 128, 1)  # score head; the last layer is conv + sigmoid, no BN
    cross_ratio: float = 1.2  # tanh offsets times this: keypoints may leave their cell by 20 %


@dataclass(frozen=True)
class S2LDConfig:
    """The network (every field fixes a shape of the published checkpoint except ``coarse_matching``)."""

    backbone: ResNetFPNConfig = field(default_factory=ResNetFPNConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    adjuster_dims: tuple[int, ...] = (384,)  # hidden conv-BN-ReLU channels of the feature adjuster
    coarse: TransformerConfig = field(default_factory=TransformerConfig)
    coarse_matching: CoarseMatchingConfig = field(default_factory=CoarseMatchingConfig)
    fine: TransformerConfig = field(
        default_factory=lambda: TransformerConfig(d_model=128, nhead=8, layer_names=("self", "cross"))
    )
    fine_window: int = 5  # local-dense window at 1/2 resolution (odd)
    fine_concat_coarse: bool = True  # merge the coarse feature of the cell into each window entry

    @property
    def coarse_stride(self) -> int:
        return 8

    @property
    def fine_stride(self) -> int:
        return 2


@dataclass(frozen=True)
class ScoreFilter:
    """Upstream's optional inference filter (``with_filter=True``, off in the published evaluation).

    Keypoint scores of image 0 are divided by their maximum (+1e-5); matches with a normalised score >= the
    threshold are kept, and the threshold is lowered by ``step`` until more than ``min_matches`` remain.
    The returned ``keypoint_scores`` are then the normalised scores, as upstream.
    """

    threshold: float = 0.2
    step: float = 0.1
    min_matches: int = 100


@dataclass(frozen=True)
class InferenceConfig:
    """How ``match_images`` prepares images and selects matches. ``None`` disables a filter.

    ``demo_match.py`` upstream uses ``min_keypoint_score=0.5, min_confidence=0.8, border_margin=5,
    max_matches=1024``.
    """

    resize: int | None = 640  # longer side the network sees (None: as given); both sides floored to multiples of 8
    pad_to_square: bool = False  # zero-pad to a resize x resize square with masks (upstream MegaDepth-1500 test)
    score_filter: ScoreFilter | None = None
    min_keypoint_score: float | None = None  # keep matches whose image-0 keypoint score is > this
    min_confidence: float | None = None  # keep matches whose coarse confidence is > this
    border_margin: float | None = None  # drop matches closer than this (network pixels) to either image border
    max_matches: int | None = None  # keep the most confident ones
