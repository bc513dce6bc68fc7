"""Factories of the classical (weight-free) registry entries: ``sift``."""

from __future__ import annotations

from ..errors import ConfigError
from .sift import SiftMatcher

SIFT_DEFAULT_KEYPOINTS = 8192  # keypoints per image, everywhere (match, benchmark, match-pairs, sfm)


def sift(device="cpu", weights=None, num: int | None = None, **options) -> SiftMatcher:
    """The ``sift`` registry entry: :class:`SiftMatcher` with ``num`` keypoints per image (default 8192).

    ``device`` is accepted for the common factory signature and ignored (OpenCV runs on the CPU).
    Options: ``ratio``, ``root_sift``, ``mutual``, ``contrast_threshold``, ``edge_threshold``.
    """
    if weights is not None and weights is not False:
        raise ConfigError("the 'sift' matcher has no weights; drop --weights")
    known = {"ratio", "root_sift", "mutual", "contrast_threshold", "edge_threshold"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown option(s) for 'sift': {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    num = SIFT_DEFAULT_KEYPOINTS if num is None else int(num)
    if num < 1:
        raise ConfigError(f"num (keypoints per image) must be >= 1, got {num}")
    return SiftMatcher(max_keypoints=num, **options)
