"""Adapter: any model of kind ``matches`` (S2LD, IMAMatch, XFeat, ...) as a :class:`PairMatcher`."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ..io import load_image
from .base import Matches, PairMatcher


class CorrespondenceMatcher(PairMatcher):
    """Runs ``model.match_images`` and returns its correspondences as :class:`Matches`.

    Args:
        model: a model of kind ``matches`` (see :mod:`densematch.models.contract`).
        name: its registry name.
        num: keep at most this many matches, the highest-scoring ones (None = all the model returns).
        feature_cache: images whose features are kept, for models whose ``match_images`` is
            ``match_features(extract(image0), extract(image1))`` (XFeat, XFeat*): an image seen again (the
            same path, or the same image object, as match-pairs' image cache passes) is not re-extracted.
    Extras the model returns besides ``kpts0/kpts1/scores`` (e.g. IMAMatch's ``reverse``) are kept in
    ``Matches.info``.
    """

    def __init__(self, model, name: str, num: int | None = None, seed: int = 0, feature_cache: int = 16):
        self.model = model
        self.name = name
        self.num = None if num is None else int(num)
        self.seed = int(seed)
        self.per_image = callable(getattr(model, "extract", None)) and callable(getattr(model, "match_features", None))
        self.feature_cache = int(feature_cache)
        self._features: OrderedDict = OrderedDict()  # key -> (the image object, its size, its features)

    def match_pair(self, image0, image1) -> Matches:
        if self.per_image:
            (size0, feats0), (size1, feats1) = self._extract(image0), self._extract(image1)
            with torch.inference_mode():
                out = self.model.match_features(feats0, feats1)
            return self._to_matches(out, size0, size1)
        image0, image1 = load_image(image0), load_image(image1)
        with torch.inference_mode():
            out = self.model.match_images(image0, image1)
        return self._to_matches(out, image0.size, image1.size)

    def _extract(self, image):
        """``(size, features)`` of one image, from the cache when this image was seen recently."""
        key = str(image) if isinstance(image, (str, Path)) else id(image)
        cached = self._features.get(key)
        if cached is not None and (isinstance(key, str) or cached[0] is image):
            self._features.move_to_end(key)
            return cached[1:]
        loaded = load_image(image)
        with torch.inference_mode():
            features = self.model.extract(loaded)
        if self.feature_cache > 0:  # the image object is kept with its entry, so its id cannot be reused
            self._features[key] = (image, loaded.size, features)
            while len(self._features) > self.feature_cache:
                self._features.popitem(last=False)
        return loaded.size, features

    def _to_matches(self, out, size0, size1) -> Matches:
        kpts0, kpts1, scores = (out[k].detach().double().cpu().numpy() for k in ("kpts0", "kpts1", "scores"))
        if self.num is not None and len(scores) > self.num:
            keep = np.sort(np.argsort(-scores, kind="stable")[: self.num])
            kpts0, kpts1, scores = kpts0[keep], kpts1[keep], scores[keep]
        info = {k: _plain(v) for k, v in out.items() if k not in ("kpts0", "kpts1", "scores")}
        return Matches(kpts0, kpts1, scores, size0, size1, info=info)


def _plain(value):
    """Tensors of one element -> Python scalars; other tensors -> numpy arrays."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.detach().cpu().numpy()
    return value
