"""XFeat (CVPR 2024) with the official weights: sparse ``xfeat`` and semi-dense ``xfeat_star`` matchers."""

from .config import XFeatSparseConfig, XFeatStarConfig
from .network import XFeatNetwork
from .sparse import XFeat
from .star import XFeatStar
from .zoo import xfeat, xfeat_star

__all__ = ["XFeat", "XFeatNetwork", "XFeatSparseConfig", "XFeatStar", "XFeatStarConfig", "xfeat", "xfeat_star"]
