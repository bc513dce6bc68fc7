"""Homography-warped pairs from any folder of images (self-supervised pre-training data).

Each sample takes one source image, draws two random homographies (rotation, scale, perspective,
translation about the image centre) and renders two views of it at ``resolution``; ``H_0to1`` relates
them exactly, so ``warp0`` is known for every pixel. A pixel of view 0 is valid when it shows the source
image (not the fill outside it) and lands inside view 1. Each view gets its own photometric jitter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..conventions import pixel_to_normalized
from ..errors import DensematchError
from ..geometry.warps import pixel_grid
from ..io import load_image
from .transforms import to_tensor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class HomographyConfig:
    """Strength of the random homographies and photometric changes (per view)."""

    resolution: tuple[int, int] = (480, 640)  # (H, W) of both views
    max_rotation_deg: float = 25.0  # in-plane rotation drawn in [-max, max]
    scale_range: tuple[float, float] = (0.75, 1.35)  # zoom, drawn log-uniformly
    max_perspective: float = 0.25  # projective terms, in units of 1 / image size
    max_translation: float = 0.1  # shift as a fraction of the image size
    brightness: float = 0.2  # additive, in [0, 1] units
    contrast: float = 0.2  # multiplicative around the mean, 1 +- this
    saturation: float = 0.3  # blend with grey, 1 +- this
    noise_std: float = 0.01  # additive Gaussian noise
    pairs_per_image: int = 1  # dataset length = images x this


def list_images(root) -> list[Path]:
    """All image files below ``root`` (recursive, sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise DensematchError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DensematchError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    return files


def random_homography(
    rng: np.random.Generator, size: tuple[int, int], config: HomographyConfig
) -> np.ndarray:
    """A random 3x3 homography of ``(W, H)`` images about their centre (OpenCV pixels)."""
    width, height = size
    centre = np.array([[1, 0, (width - 1) / 2], [0, 1, (height - 1) / 2], [0, 0, 1.0]])
    angle = math.radians(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg))
    log_lo, log_hi = (math.log(s) for s in config.scale_range)
    scale = math.exp(rng.uniform(log_lo, log_hi))
    rotate_scale = np.array(
        [
            [scale * math.cos(angle), -scale * math.sin(angle), 0],
            [scale * math.sin(angle), scale * math.cos(angle), 0],
            [0, 0, 1.0],
        ]
    )
    px, py = rng.uniform(-config.max_perspective, config.max_perspective, size=2) / max(width, height)
    perspective = np.array([[1, 0, 0], [0, 1, 0], [px, py, 1.0]])
    tx, ty = rng.uniform(-config.max_translation, config.max_translation, size=2) * (width, height)
    translate = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]])
    return translate @ centre @ perspective @ rotate_scale @ np.linalg.inv(centre)


def cover_transform(source_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Map from canonical view pixels to source pixels: the source scaled to cover the view, centred."""
    (sw, sh), (width, height) = source_size, size
    s = min(sw / width, sh / height)
    return np.array(
        [[s, 0, (sw - 1) / 2 - s * (width - 1) / 2], [0, s, (sh - 1) / 2 - s * (height - 1) / 2], [0, 0, 1.0]]
    )


def homography_warp(H: np.ndarray, size0: tuple[int, int], size1: tuple[int, int]):
    """Normalised warp ``(H0, W0, 2)`` of ``H`` (pixels of image 0 -> image 1) and in-bounds mask."""
    width0, height0 = size0
    width1, height1 = size1
    uv = pixel_grid(height0, width0, dtype=torch.float64)
    Ht = torch.as_tensor(H, dtype=torch.float64)
    mapped = torch.cat((uv, torch.ones_like(uv[..., :1])), dim=-1) @ Ht.T
    uv1 = mapped[..., :2] / mapped[..., 2:]
    inside = (mapped[..., 2] > 0) & (uv1[..., 0] >= -0.5) & (uv1[..., 0] <= width1 - 0.5)
    inside &= (uv1[..., 1] >= -0.5) & (uv1[..., 1] <= height1 - 0.5)
    return pixel_to_normalized(uv1, width1, height1).float(), inside


def photometric_jitter(
    image: torch.Tensor, rng: np.random.Generator, config: HomographyConfig
) -> torch.Tensor:
    """Random brightness, contrast, saturation and noise on a ``(3, H, W)`` image in [0, 1]."""
    grey = image.mean(dim=0, keepdim=True)
    image = grey + (image - grey) * (1 + rng.uniform(-config.saturation, config.saturation))
    mean = image.mean()
    image = mean + (image - mean) * (1 + rng.uniform(-config.contrast, config.contrast))
    image = image + rng.uniform(-config.brightness, config.brightness)
    if config.noise_std > 0:
        noise = rng.normal(0.0, config.noise_std, size=tuple(image.shape)).astype(np.float32)
        image = image + torch.from_numpy(noise)
    return image.clamp(0, 1)


class HomographyPairs(Dataset):
    """Random homography pairs from the images under ``root`` (pair-sample format plus ``H_0to1``)."""

    def __init__(self, root, config: HomographyConfig = HomographyConfig()):
        self.files = list_images(root)
        self.config = config

    def __len__(self) -> int:
        return len(self.files) * self.config.pairs_per_image

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, np.random.default_rng(index))

    def sample(self, index: int, rng: np.random.Generator) -> dict:
        height, width = self.config.resolution
        source = np.asarray(load_image(self.files[index % len(self.files)]))
        source_size = (source.shape[1], source.shape[0])
        to_source = cover_transform(source_size, (width, height))
        if to_source[0, 0] > 1.5:  # shrink large sources first so that the warp does not alias
            factor = 1.25 / to_source[0, 0]
            new_size = (max(round(source_size[0] * factor), 1), max(round(source_size[1] * factor), 1))
            source = cv2.resize(source, new_size, interpolation=cv2.INTER_AREA)
            source_size = new_size
            to_source = cover_transform(source_size, (width, height))
        views, from_source = [], []
        for _ in range(2):
            G = random_homography(rng, (width, height), self.config)
            M = G @ np.linalg.inv(to_source)  # source pixels -> view pixels
            warped = cv2.warpPerspective(
                source,
                M,
                (width, height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
            views.append(photometric_jitter(to_tensor(warped), rng, self.config))
            from_source.append(M)
        H_0to1 = from_source[1] @ np.linalg.inv(from_source[0])
        H_0to1 /= H_0to1[2, 2]
        warp0, valid0 = homography_warp(H_0to1, (width, height), (width, height))
        _, shows_source = homography_warp(np.linalg.inv(from_source[0]), (width, height), source_size)
        valid0 &= shows_source
        return {
            "image0": views[0],
            "image1": views[1],
            "warp0": torch.where(valid0[..., None], warp0, torch.zeros_like(warp0)),
            "valid0": valid0,
            "H_0to1": torch.as_tensor(H_0to1, dtype=torch.float32),
        }
