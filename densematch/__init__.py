"""densematch: learned dense and semi-dense image matching (RoMa, Tiny RoMa, L2M++) behind one API.

>>> import densematch
>>> model = densematch.roma_outdoor(device="cpu", coarse_res=280, upsample_res=420)
>>> warp, certainty = model.match("a.jpg", "b.jpg")
>>> matches, certainty = model.sample(warp, certainty, num=5000)

Coordinate conventions: see :mod:`densematch.conventions`.
"""

from .matchers import Matches, get_matcher, list_matchers
from .models.roma.zoo import l2mpp, roma_indoor, roma_outdoor, tiny_roma_v1_outdoor
from .registry import list_models, load

__version__ = "0.1.0"

__all__ = [
    "Matches",
    "get_matcher",
    "l2mpp",
    "list_matchers",
    "list_models",
    "load",
    "roma_indoor",
    "roma_outdoor",
    "tiny_roma_v1_outdoor",
]
