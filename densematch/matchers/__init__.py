"""Tool-level matchers: the classical ``sift`` baseline and every registered learned model."""

from __future__ import annotations

from ..errors import ConfigError
from .base import DenseField, Matches, PairMatcher

CLASSICAL = ("sift",)


def list_matchers() -> list[str]:
    """Names accepted by :func:`get_matcher`: the classical baselines and every registered model."""
    from ..registry import list_models

    return sorted(CLASSICAL) + list_models()


def get_matcher(
    name: str | None = None, device="cpu", weights=None, num: int = 5000, seed: int = 0, **model_kwargs
) -> PairMatcher:
    """Build a :class:`PairMatcher` by name.

    ``num`` is the number of correspondences sampled from dense matchers (the cap for sparse ones);
    ``seed`` makes dense sampling reproducible. Further keyword arguments go to the model factory
    (e.g. ``coarse_res=280``). ``name=None`` is :data:`densematch.registry.DEFAULT_MODEL` (offline).
    """
    if name is None:
        from ..registry import DEFAULT_MODEL

        name = DEFAULT_MODEL
    if name == "sift":
        from .sift import SiftMatcher

        if weights is not None:
            raise ValueError("the 'sift' matcher has no weights")
        return SiftMatcher(max_keypoints=max(num, 1), **model_kwargs)
    from ..errors import UnknownModelError
    from ..registry import MODELS
    from .dense import DenseModelMatcher

    if name not in MODELS:
        raise UnknownModelError(f"unknown matcher '{name}'; available: {', '.join(list_matchers())}")

    try:
        model = MODELS[name].build(device, weights=weights, **model_kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad options for model '{name}': {exc}") from exc
    return DenseModelMatcher(model, name=name, num=num, seed=seed)


__all__ = ["DenseField", "Matches", "PairMatcher", "get_matcher", "list_matchers"]
