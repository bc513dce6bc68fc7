"""Tool-level matchers: every registry entry as a :class:`PairMatcher`, chosen by the entry's kind.

=============  ==============================================  =========================================
kind           adapter                                          ``num`` means
=============  ==============================================  =========================================
``dense``      :class:`~.dense.DenseModelMatcher`               correspondences sampled per pair (5000)
``matches``    :class:`~.correspondences.CorrespondenceMatcher`  at most this many, best scores (all)
``classical``  the factory's own matcher (``sift``)             keypoints per image (8192)
=============  ==============================================  =========================================
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import DenseField, Matches, PairMatcher

DEFAULT_NUM = {"dense": 5000, "matches": None, "classical": None}  # None: the model's / factory's default


def list_matchers() -> list[str]:
    """Names accepted by :func:`get_matcher`: every registered model, classical baselines included."""
    from ..registry import list_models

    return list_models()


def resolve_device(device) -> str:
    """``"auto"`` (or None) -> ``"cuda"`` when a GPU is available, else ``"cpu"``; anything else as given."""
    if device is None or device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def get_matcher(name: str, device="cpu", weights=None, num: int | None = None, seed: int = 0,
                **options) -> PairMatcher:
    """Build the registered model ``name`` as a :class:`PairMatcher`.

    ``num``: see the table above (None = the kind's default); ``seed`` makes dense sampling reproducible.
    Further keyword arguments are the model's options (e.g. ``coarse_res=280``, ``resize=640``), passed to
    its factory, which rejects unknown ones.
    """
    from ..registry import get_entry

    entry = get_entry(name)
    if num is not None and int(num) < 1:
        raise ConfigError(f"num must be >= 1, got {num}")
    device = resolve_device(device)
    if entry.kind == "classical":
        return entry.build(device, weights=weights, num=num, **options)
    try:
        model = entry.build(device, weights=weights, **options)
    except TypeError as exc:
        raise ConfigError(f"bad options for model '{name}': {exc}") from exc
    num = DEFAULT_NUM[entry.kind] if num is None else num
    if entry.kind == "dense":
        from .dense import DenseModelMatcher

        return DenseModelMatcher(model, name=name, num=num, seed=seed)
    from .correspondences import CorrespondenceMatcher

    return CorrespondenceMatcher(model, name=name, num=num, seed=seed)


__all__ = ["DenseField", "Matches", "PairMatcher", "get_matcher", "list_matchers"]
