"""Adapter: any RoMa-family model (``match`` + ``sample``) as a :class:`PairMatcher`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..conventions import normalized_to_pixel
from ..io import load_image
from .base import DenseField, Matches, PairMatcher
from .feature_cache import FeatureCache, splits_per_image


class DenseModelMatcher(PairMatcher):
    """Runs ``model.match`` then balanced ``model.sample`` and converts to OpenCV pixels.

    Args:
        model: a RoMa-family model (``roma_outdoor``, ``tiny_roma_v1_outdoor``, ...).
        num: number of correspondences sampled per pair.
        seed: seed of the sampling generator (each pair uses the same seed: results do not depend on order).
        feature_cache: images whose per-image encoding is kept (:class:`~densematch.matchers.feature_cache.
            FeatureCache`), for models with ``extract`` + ``match_features`` (RoMa's inputs and DINOv2 map,
            Tiny RoMa's XFeat features): an image seen again in another pair is not encoded again.
    """

    def __init__(self, model, name: str, num: int = 5000, seed: int = 0, feature_cache: int = 16):
        self.model = model
        self.name = name
        self.num = int(num)
        self.seed = int(seed)
        self.per_image = splits_per_image(model)
        self.features = FeatureCache(feature_cache)

    @property
    def is_dense(self) -> bool:
        return True

    def _run(self, image0, image1):
        if self.per_image:
            size0, features0 = self.features.get(image0, self.model.extract)
            size1, features1 = self.features.get(image1, self.model.extract)
            warp, certainty = self.model.match_features(features0, features1)
        else:
            image0, image1 = load_image(image0), load_image(image1)
            (size0, size1), (warp, certainty) = (image0.size, image1.size), self.model.match(image0, image1)
        if warp.dim() == 3:  # models that, like upstream Tiny RoMa, return (H, W, 4) for PIL input
            warp, certainty = warp[None], certainty[None]
        return size0, size1, warp, certainty

    def match_pair(self, image0, image1) -> Matches:
        return self._sample(*self._run(image0, image1))

    def match_dense(self, image0, image1) -> DenseField:
        return self._dense(*self._run(image0, image1))

    def match_batch(self, pairs: list) -> list[Matches]:
        """Match a list of ``(image0, image1)`` pairs, in one batched network call when the model has
        ``match_batch`` (RoMa: ``match_features`` of stacked per-image features when it splits per image);
        each pair is sampled with the same seed as :meth:`match_pair` would use."""
        if not hasattr(self.model, "match_batch"):
            return [self.match_pair(image0, image1) for image0, image1 in pairs]
        if self.per_image:
            first = [self.features.get(image0, self.model.extract) for image0, _ in pairs]
            second = [self.features.get(image1, self.model.extract) for _, image1 in pairs]
            stack = self.model.stack_features
            warp, certainty = self.model.match_features(stack([f for _, f in first]), stack([f for _, f in second]))
            sizes = [(a, b) for (a, _), (b, _) in zip(first, second, strict=True)]
        else:
            images = [(load_image(image0), load_image(image1)) for image0, image1 in pairs]
            warp, certainty = self.model.match_batch([a for a, _ in images], [b for _, b in images])
            sizes = [(a.size, b.size) for a, b in images]
        return [self._sample(a, b, warp[i : i + 1], certainty[i : i + 1]) for i, (a, b) in enumerate(sizes)]

    def match_pair_and_dense(self, image0, image1) -> tuple[Matches, DenseField]:
        outputs = self._run(image0, image1)
        return self._sample(*outputs), self._dense(*outputs)

    def _sample(self, size0, size1, warp, certainty) -> Matches:
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        matches, scores = self.model.sample(warp, certainty, num=self.num, generator=generator)
        matches = matches.double().cpu()
        kpts0 = normalized_to_pixel(matches[:, :2], *size0).numpy()
        kpts1 = normalized_to_pixel(matches[:, 2:], *size1).numpy()
        return Matches(kpts0, kpts1, scores.double().cpu().numpy(), size0, size1)

    def _dense(self, size0, size1, warp, certainty) -> DenseField:
        (w0, h0), (w1, h1) = size0, size1
        width = certainty.shape[-1] // 2 if getattr(self.model, "symmetric", False) else certainty.shape[-1]
        field = warp[0, :, :width, 2:].permute(2, 0, 1)[None].float()  # (1, 2, Hm, Wm), A->B half
        cert = certainty[0, :, :width][None, None].float()
        if field.shape[-2:] != (h0, w0):
            field = F.interpolate(field, size=(h0, w0), mode="bilinear", align_corners=False)
            cert = F.interpolate(cert, size=(h0, w0), mode="bilinear", align_corners=False)
        uv1 = normalized_to_pixel(field[0].permute(1, 2, 0), w1, h1)
        return DenseField(uv1.cpu().numpy().astype(np.float32), cert[0, 0].cpu().numpy().astype(np.float32))
