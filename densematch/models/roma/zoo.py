"""User-facing factories of the RoMa family, drop-in for the upstream ``romatch`` ones.

Each factory builds the network from its typed config, then loads weights strictly (published
files by default, downloaded once into the torch hub cache).
"""

from __future__ import annotations

import torch

from ...defaults import ROMA_COARSE_RES, ROMA_UPSAMPLE_RES
from ...registry import get_entry


def _roma(name: str, device, weights, dinov2_weights, coarse_res, upsample_res, amp_dtype, symmetric, **overrides):
    from .matcher import build_roma

    entry = get_entry(name)
    return build_roma(
        device=device,
        matcher_weights=weights,
        dinov2_weights=dinov2_weights,
        matcher_spec=entry.weights["matcher"],
        dinov2_spec=entry.weights["dinov2"],
        coarse_res=coarse_res,
        upsample_res=upsample_res,
        amp_dtype=amp_dtype,
        symmetric=symmetric,
        name=name,
        **overrides,
    )


def roma_outdoor(device="cpu", weights=None, dinov2_weights=None, coarse_res=ROMA_COARSE_RES,
                 upsample_res=ROMA_UPSAMPLE_RES, amp_dtype=torch.float16, symmetric=True, **overrides):
    """RoMa outdoor (MegaDepth). Same arguments and return type as ``romatch.roma_outdoor``.

    ``weights`` / ``dinov2_weights``: None (published files), a local path, or a state dict.
    ``coarse_res`` / ``upsample_res``: int or (H, W); coarse sides must be multiples of 14.
    """
    return _roma("roma_outdoor", device, weights, dinov2_weights, coarse_res, upsample_res, amp_dtype,
                 symmetric, **overrides)


def roma_indoor(device="cpu", weights=None, dinov2_weights=None, coarse_res=ROMA_COARSE_RES,
                upsample_res=ROMA_UPSAMPLE_RES, amp_dtype=torch.float16, symmetric=True, **overrides):
    """RoMa indoor (MegaDepth + ScanNet). Same arguments as :func:`roma_outdoor`."""
    return _roma("roma_indoor", device, weights, dinov2_weights, coarse_res, upsample_res, amp_dtype,
                 symmetric, **overrides)


def l2mpp(device="cpu", weights=None, dinov2_weights=None, coarse_res=672, upsample_res=1344,
          amp_dtype=torch.float16, symmetric=True, **overrides):
    """L2M++: the RoMa architecture with L2M's own (3D-aware) DINOv2-L encoder and decoder weights.

    Defaults follow the published ``l2mpp_model`` (coarse 672, upsample 1344). L2M++ ships an older RoMa
    snapshot whose numerics differ in two places, reproduced here: the GP solves with an explicit inverse,
    and the refiners' displacement scale factor is 1 in the coarse pass and sqrt(upsample / coarse area)
    in the upsampling pass (``scale_factor_mode="coarse_relative"``). Checkpoint keys prefixed
    ``module.``/``model.`` are accepted, as by the published loader.
    """
    overrides = {"gp_solver": "inverse", "scale_factor_mode": "coarse_relative", **overrides}
    return _roma("l2mpp", device, weights, dinov2_weights, coarse_res, upsample_res, amp_dtype, symmetric,
                 **overrides)


def tiny_roma_v1_outdoor(device="cpu", weights=None, **overrides):
    """Tiny RoMa v1 (XFeat backbone). Same arguments as ``romatch.tiny_roma_v1_outdoor`` minus ``xfeat``."""
    from .tiny import build_tiny_roma

    return build_tiny_roma(device=device, weights=weights, spec=get_entry("tiny_roma_v1_outdoor").weights["matcher"],
                           **overrides)
