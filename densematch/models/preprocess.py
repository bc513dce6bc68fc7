"""Re-export of :mod:`densematch.preprocess` (image -> tensor), which lives beside ``io`` so that
``data``, ``viz`` and ``sfm`` use it without importing from ``models``."""

from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, imagenet_normalize, to_tensor

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "imagenet_normalize", "to_tensor"]
