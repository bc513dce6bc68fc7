"""Factories of the registered IMAMatch models (``imamatch_megadepth``, ``imamatch_scannet``).

No IMAMatch weights are published (every upstream script says ``'path-to-weight'``): pass a file
(``weights="imamatch.pth"``, e.g. written by ``densematch train imamatch_megadepth``; files saved by the
reference code, with or without DDP's ``module.`` prefix, load strictly) or ``weights=False`` for a random
initialisation (tests, training from scratch).
"""

from __future__ import annotations

import torch

from ...errors import WeightsError
from ...weights import load_strict, read_state_dict
from .config import MEGADEPTH_ARCH, MEGADEPTH_TEST, SCANNET_ARCH, SCANNET_TEST, IMAMatchArchitecture, IMAMatchSettings
from .network import IMAMatch


def _strip_module(state: dict) -> dict:
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def build_imamatch(name: str, arch: IMAMatchArchitecture, settings: IMAMatchSettings, device="cpu", weights=None,
                   **options) -> IMAMatch:
    """Build IMAMatch with ``arch``, ``settings`` updated by ``options`` (validated), weights loaded strictly."""
    settings = settings.updated(**options)
    if weights is None:
        raise WeightsError(
            f"no {name} weights are published (upstream ships none). Train them with "
            f"`densematch train {name} --data DIR --output OUT` and pass the file (weights='OUT/...pth' or "
            "--weights), pass a checkpoint saved by the reference code, or weights=False for random weights"
        )
    model = IMAMatch(arch, settings)
    if weights is not False:
        load_strict(model, _strip_module(read_state_dict(weights, what=name)), what=name)
    return model.to(device=torch.device(device), dtype=torch.float32).eval()


def imamatch_megadepth(device="cpu", weights=None, **options) -> IMAMatch:
    """IMAMatch, MegaDepth configuration and test settings (1216 px padded to a square, coarse threshold
    0.2, high threshold 0.6, add_matches 4, iter_optimize, allow_reverse, rplus 1)."""
    return build_imamatch("imamatch_megadepth", MEGADEPTH_ARCH, MEGADEPTH_TEST, device, weights, **options)


def imamatch_scannet(device="cpu", weights=None, **options) -> IMAMatch:
    """IMAMatch, ScanNet configuration (``fix_bug_for_scannet``) and test settings (640x480, coarse threshold
    0.01, add_matches 0, iter_optimize, allow_reverse, rplus 1.5, bundle adjustment for pose)."""
    return build_imamatch("imamatch_scannet", SCANNET_ARCH, SCANNET_TEST, device, weights, **options)
