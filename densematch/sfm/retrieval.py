"""Global image descriptors for retrieval-based pair selection (``densematch pairs --retrieval K``).

``sift-vlad`` (default, needs no weights)
    VLAD over RootSIFT descriptors. The visual vocabulary is a k-means fitted on the collection
    itself (seeded, so the descriptors are reproducible). Each image's local descriptors are assigned
    to their nearest centre, residuals are summed per centre, each block is L2-normalised
    ("intra-normalisation"), then signed square root and a global L2 normalisation.
``dinov2-gem`` (hook, needs DINOv2 weights)
    Generalised-mean pooling of DINOv2 patch features, available when the DINOv2 backbone
    (``densematch.backbones.dinov2``) is part of the installation.

Every function returns ``(N, D)`` float32 L2-normalised rows, one per image, in input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DensematchError
from ..io import load_image
from .loading import prefetched

DESCRIPTORS = ("sift-vlad", "dinov2-gem")


@dataclass(frozen=True)
class VladConfig:
    max_side: int = 640  # images are downscaled so that their longer side is at most this many pixels
    max_keypoints: int = 2000  # SIFT keypoints per image
    vocabulary_size: int = 32  # k-means centres; the descriptor has 128 * vocabulary_size dimensions
    max_training_descriptors: int = 50_000  # random subset of all local descriptors used to fit k-means
    kmeans_iterations: int = 25  # Lloyd iterations after k-means++ seeding
    seed: int = 0  # seeds the subset and the k-means initialisation


def downscaled(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` resized (area filter) so that its longer side is at most ``max_side`` pixels."""
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX)


def sift_vlad_descriptors(paths: Sequence, config: VladConfig = VladConfig(), progress=None) -> np.ndarray:
    """VLAD descriptors ``(N, 128 * vocabulary_size)`` over RootSIFT; vocabulary fitted on ``paths``."""
    from ..matchers.sift import SiftMatcher

    sift = SiftMatcher(max_keypoints=config.max_keypoints, root_sift=True)
    local = []
    for _, image in prefetched(paths, lambda p: downscaled(load_image(p, mode="L"), config.max_side)):
        local.append(sift.detect(image)[1])
        if progress is not None:
            progress.update(1)
    rng = np.random.default_rng(config.seed)
    pool = np.concatenate([d for d in local if len(d)] or [np.zeros((0, 128), np.float32)])
    if len(pool) < config.vocabulary_size:
        raise DensematchError(
            f"only {len(pool)} SIFT descriptors in {len(paths)} images, fewer than the vocabulary size "
            f"{config.vocabulary_size}; the images are too small or textureless for sift-vlad retrieval"
        )
    if len(pool) > config.max_training_descriptors:
        pool = pool[np.sort(rng.choice(len(pool), config.max_training_descriptors, replace=False))]
    centres = kmeans(pool.astype(np.float64), config.vocabulary_size, config.kmeans_iterations, rng)
    return np.stack([vlad(d, centres) for d in local]).astype(np.float32)


def kmeans(points: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding. ``points`` ``(N, D)`` -> centres ``(k, D)``.

    An emptied cluster is re-seeded at the point farthest from its centre, so ``k`` centres survive.
    """
    centres = np.empty((k, points.shape[1]))
    centres[0] = points[rng.integers(len(points))]
    closest = _squared_distances(points, centres[:1]).ravel()
    for i in range(1, k):
        total = closest.sum()
        index = rng.choice(len(points), p=closest / total) if total > 0 else rng.integers(len(points))
        centres[i] = points[index]
        closest = np.minimum(closest, _squared_distances(points, centres[i : i + 1]).ravel())
    for _ in range(iterations):
        distances = _squared_distances(points, centres)
        labels = distances.argmin(axis=1)
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, points)
        empty = counts == 0
        updated = sums / np.maximum(counts, 1)[:, None]
        if empty.any():
            farthest = np.argsort(-distances[np.arange(len(points)), labels], kind="stable")
            updated[empty] = points[farthest[: int(empty.sum())]]
        if np.allclose(updated, centres):
            break
        centres = updated
    return centres


def vlad(descriptors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """VLAD of local descriptors ``(N, D)`` against ``centres`` ``(k, D)``: ``(k * D,)``, L2-normalised."""
    k, dim = centres.shape
    if len(descriptors) == 0:
        return np.zeros(k * dim)
    descriptors = descriptors.astype(np.float64)
    labels = _squared_distances(descriptors, centres).argmin(axis=1)
    residuals = np.zeros((k, dim))
    np.add.at(residuals, labels, descriptors - centres[labels])
    residuals /= np.maximum(np.linalg.norm(residuals, axis=1, keepdims=True), 1e-12)  # intra-normalisation
    flat = residuals.ravel()
    flat = np.sign(flat) * np.sqrt(np.abs(flat))  # power normalisation
    return flat / max(np.linalg.norm(flat), 1e-12)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None], 0)


def dinov2_gem_descriptors(
    paths: Sequence,
    weights,
    device="cpu",
    arch: str = "vitl14",
    side: int = 518,
    p: float = 3.0,
    progress=None,
) -> np.ndarray:
    """GeM-pooled DINOv2 patch features ``(N, embed_dim)`` (hook for a learned global descriptor).

    Args:
        weights: DINOv2 weights (None for the published ViT-L/14 file, a path, or a state dict).
        arch: key of ``DINOV2_CONFIGS`` (``vits14`` ... ``vitg14``).
        side: images are resized so that their longer side is ``side`` pixels (rounded to multiples of 14).
        p: GeM exponent (1 = average pooling, large = max pooling).
    """
    import torch

    from ..backbones.dinov2 import DINOV2_CONFIGS, DinoV2
    from ..preprocess import imagenet_normalize, to_tensor
    from ..registry import DINOV2_VITL14
    from ..weights import load_strict, read_state_dict

    if arch not in DINOV2_CONFIGS:
        raise DensematchError(f"unknown DINOv2 architecture '{arch}'; known: {', '.join(DINOV2_CONFIGS)}")
    model = DinoV2(DINOV2_CONFIGS[arch])
    state = read_state_dict(weights, what="DINOv2", spec=DINOV2_VITL14 if arch == "vitl14" else None)
    load_strict(model, state, what="DINOv2")
    model = model.to(device).eval()
    rows = []
    for _, image in prefetched(paths, lambda path: _resized_to_patches(load_image(path), side, 14)):
        x = imagenet_normalize(to_tensor(image))[None].to(device)
        with torch.inference_mode():
            features = model(x).float()  # (1, C, h, w)
        gem = features.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)[0]
        rows.append(torch.nn.functional.normalize(gem, dim=0).cpu().numpy())
        if progress is not None:
            progress.update(1)
    return np.stack(rows).astype(np.float32)


def _resized_to_patches(image: Image.Image, side: int, patch: int) -> Image.Image:
    scale = side / max(image.size)
    width = max(patch, round(image.width * scale / patch) * patch)
    height = max(patch, round(image.height * scale / patch) * patch)
    return image.resize((width, height), Image.Resampling.BICUBIC)


def global_descriptors(
    images_dir, names: Sequence[str], method: str = "sift-vlad", *, weights=None, device="cpu", progress=None
) -> np.ndarray:
    """Global descriptors ``(N, D)`` of the images ``names`` (relative to ``images_dir``) by ``method``."""
    paths = [Path(images_dir) / name for name in names]
    if method == "sift-vlad":
        if weights is not None:
            raise DensematchError("the sift-vlad descriptor has no weights")
        return sift_vlad_descriptors(paths, progress=progress)
    if method == "dinov2-gem":
        return dinov2_gem_descriptors(paths, weights, device=device, progress=progress)
    raise DensematchError(f"unknown global descriptor '{method}'; known: {', '.join(DESCRIPTORS)}")
