"""densematch: learned dense and semi-dense image matching (RoMa, Tiny RoMa, L2M++) behind one API.

>>> import densematch
>>> model = densematch.roma_outdoor(device="cpu", coarse_res=280, upsample_res=420)
>>> warp, certainty = model.match("a.jpg", "b.jpg")
>>> matches, certainty = model.sample(warp, certainty, num=5000)

Coordinate conventions: see :mod:`densematch.conventions`.
"""

import importlib

__version__ = "0.1.0"

# public name -> module defining it; imported on first use so that ``import densematch`` (and the
# command line's --help) does not load torch
_LAZY = {
    "Matches": "densematch.matchers",
    "get_matcher": "densematch.matchers",
    "list_matchers": "densematch.matchers",
    "l2mpp": "densematch.models.roma.zoo",
    "roma_indoor": "densematch.models.roma.zoo",
    "roma_outdoor": "densematch.models.roma.zoo",
    "tiny_roma_v1_outdoor": "densematch.models.roma.zoo",
    "list_models": "densematch.registry",
    "load": "densematch.registry",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'densematch' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


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
