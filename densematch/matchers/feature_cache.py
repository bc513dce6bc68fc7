"""Per-image features kept across pairs, for models that split their work into ``extract`` + ``match_features``.

Many-pair matching (``match-pairs``, ``benchmark``) sees each image in several pairs. A model that declares

* ``extract(image) -> features``: the per-image part of its work (path, PIL image or uint8 array in,
  anything out), and
* ``match_features(features0, features1) -> result``: the rest, with ``result`` equal to what matching
  the two images directly gives,

is run through a :class:`FeatureCache`, so an image seen again is not encoded again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..io import image_size


def splits_per_image(model) -> bool:
    """Whether ``model`` has both ``extract`` and ``match_features``."""
    return callable(getattr(model, "extract", None)) and callable(getattr(model, "match_features", None))


class FeatureCache:
    """The features of the last ``capacity`` images (least recently used go first; 0 keeps none).

    An image is recognised by its path, or, for an image object (match-pairs passes the same PIL object for
    an image it holds decoded), by that object itself: the object is kept with its entry, so its ``id``
    cannot be reused by another image while the entry exists.
    """

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self._entries: OrderedDict[Any, tuple[Any, tuple[int, int], Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, image, extract: Callable) -> tuple[tuple[int, int], Any]:
        """``(size, extract(image))`` of ``image`` (path, PIL image or array); ``size`` is ``(W, H)``.

        ``extract`` gets the image as given (a path stays a path: a model may read files its own way, as S2LD
        reads grey with OpenCV); the size is read from the file's header."""
        key = str(image) if isinstance(image, (str, Path)) else id(image)
        cached = self._entries.get(key)
        if cached is not None and (isinstance(key, str) or cached[0] is image):
            self._entries.move_to_end(key)
            return cached[1], cached[2]
        size = image_size(image)
        with torch.inference_mode():
            features = extract(image)
        if self.capacity > 0:
            self._entries[key] = (image, size, features)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return size, features

