"""Image -> tensor preprocessing shared by models, datasets and pictures (PIL bicubic, ImageNet mean/std)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_tensor(image, size: tuple[int, int] | None = None) -> torch.Tensor:
    """RGB PIL image (or uint8 ``(H, W, 3)`` / greyscale ``(H, W)`` array) -> ``(3, H, W)`` float32 in [0, 1],
    optionally resized to ``size`` = (H, W) first.

    The resize is PIL's bicubic (antialiased when shrinking), exactly what romatch's torchvision
    ``Resize(BICUBIC)`` does on PIL images; the aspect ratio is not preserved.
    """
    if size is not None:
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image))
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC)
    array = np.array(image, dtype=np.float32)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    array = np.ascontiguousarray(array.transpose((2, 0, 1)))
    array /= 255.0
    return torch.from_numpy(array)


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` per channel over the channel dimension -3."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std
