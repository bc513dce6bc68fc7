"""Adapter: any model of kind ``matches`` (S2LD, IMAMatch, XFeat, ...) as a :class:`PairMatcher`."""

from __future__ import annotations

import numpy as np
import torch

from ..io import image_size
from .base import Matches, PairMatcher
from .feature_cache import FeatureCache, splits_per_image


class CorrespondenceMatcher(PairMatcher):
    """Runs ``model.match_images`` and returns its correspondences as :class:`Matches`.

    Args:
        model: a model of kind ``matches`` (see :mod:`densematch.models.contract`).
        name: its registry name.
        num: keep at most this many matches, the highest-scoring ones (None = all the model returns).
        feature_cache: images whose features are kept (:class:`~densematch.matchers.feature_cache.FeatureCache`),
            for models whose ``match_images`` is ``match_features(extract(image0), extract(image1))`` (XFeat,
            XFeat*, S2LD): an image seen again is not re-extracted.
    Extras the model returns besides ``kpts0/kpts1/scores`` (e.g. IMAMatch's ``reverse``) are kept in
    ``Matches.info``.
    """

    def __init__(self, model, name: str, num: int | None = None, seed: int = 0, feature_cache: int = 16):
        self.model = model
        self.name = name
        self.num = None if num is None else int(num)
        self.seed = int(seed)
        self.per_image = splits_per_image(model)
        self.features = FeatureCache(feature_cache)

    def match_pair(self, image0, image1) -> Matches:
        if self.per_image:
            size0, feats0 = self.features.get(image0, self.model.extract)
            size1, feats1 = self.features.get(image1, self.model.extract)
            with torch.inference_mode():
                out = self.model.match_features(feats0, feats1)
            return self._to_matches(out, size0, size1)
        size0, size1 = image_size(image0), image_size(image1)
        with torch.inference_mode():
            out = self.model.match_images(image0, image1)  # as given: a model may read files its own way
        return self._to_matches(out, size0, size1)

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
