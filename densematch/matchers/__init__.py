"""Tool-level matchers: the classical ``sift`` baseline and every registered learned model."""

from __future__ import annotations

from .base import DenseField, Matches, PairMatcher

CLASSICAL = ("sift",)


def list_matchers() -> list[str]:
    """Names accepted by :func:`get_matcher`: the classical baselines and every registered model."""
    from ..registry import list_models

    return sorted(CLASSICAL) + list_models()


def get_matcher(name: str, device="cpu", weights=None, num: int = 5000, seed: int = 0, **model_kwargs) -> PairMatcher:
    """Build a :class:`PairMatcher` by name.

    ``num`` is the number of correspondences sampled from dense matchers (the cap for sparse ones);
    ``seed`` makes dense sampling reproducible. Further keyword arguments go to the model factory
    (e.g. ``coarse_res=280``).
    """
    if name == "sift":
        from .sift import SiftMatcher

        if weights is not None:
            raise ValueError("the 'sift' matcher has no weights")
        return SiftMatcher(max_keypoints=max(num, 1), **model_kwargs)
    from ..registry import get_entry
    from .dense import DenseModelMatcher

    entry = get_entry(name)  # raises UnknownModelError listing the names
    model = entry.build(device, weights=weights, **model_kwargs)
    return DenseModelMatcher(model, name=name, num=num, seed=seed)


__all__ = ["DenseField", "Matches", "PairMatcher", "get_matcher", "list_matchers"]
