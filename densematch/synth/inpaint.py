"""Filling the holes of a rendered view: a diffusion inpainting model when available, else OpenCV (Telea).

An inpainter is a callable ``inpainter(image, hole, seed) -> image`` on ``(H, W, 3)`` uint8 RGB images and a
``(H, W)`` bool hole mask. Only hole pixels may change: the result is always composited back onto the
input, so pixels with ground truth stay exactly as rendered. The hole mask itself is kept with the pair.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import InputShapeError, WeightsError, require


def _check(image: np.ndarray, hole: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputShapeError(f"inpainting needs an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    if hole.shape != image.shape[:2]:
        raise InputShapeError(f"hole mask {hole.shape} does not match the image {image.shape[:2]}")


def composite(original: np.ndarray, filled: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``filled`` inside ``hole``, ``original`` elsewhere."""
    return np.where(hole[..., None], filled, original)


class TeleaInpainter:
    """Classical inpainting (``cv2.inpaint``, Telea's fast marching method); no weights needed.

    Args:
        radius: the neighbourhood radius of the method, in pixels of the working resolution.
        work_size: holes are filled on a copy whose larger side is at most this (the fill is smooth anyway,
            and the cost grows with the hole area), then upsampled into the holes.
    """

    name = "telea"

    def __init__(self, radius: float = 3.0, work_size: int = 256):
        self.radius = radius
        self.work_size = work_size

    def __call__(self, image: np.ndarray, hole: np.ndarray, seed: int = 0) -> np.ndarray:
        _check(image, hole)
        if not hole.any():
            return image.copy()
        if hole.all():
            return np.zeros_like(image)
        height, width = hole.shape
        scale = min(1.0, self.work_size / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            small_hole = cv2.resize(hole.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
            filled = cv2.inpaint(small, small_hole.astype(np.uint8), self.radius, cv2.INPAINT_TELEA)
            filled = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
        else:
            filled = cv2.inpaint(image, hole.astype(np.uint8), self.radius, cv2.INPAINT_TELEA)
        return composite(image, filled, hole)


class DiffusionInpainter:
    """Stable-Diffusion inpainting through ``diffusers`` from a local checkpoint folder.

    Args:
        model: a local folder of a diffusers inpainting pipeline (e.g.
            ``stabilityai/stable-diffusion-2-inpainting``
            or L2M's fine-tune ``Liangyingping/L2M-Inpainting``), or a model id already in the local cache.
        device: torch device; fp16 on CUDA, fp32 elsewhere.
        prompt: the text prompt (L2M uses "a realistic photo").
        steps: denoising steps.
    """

    name = "diffusion"

    def __init__(self, model: str, device: str = "cpu", prompt: str = "a realistic photo", steps: int = 25):
        diffusers = require("diffusers", "inpaint", "--inpaint-model (diffusion inpainting)")
        import torch

        self.device = device
        self.prompt = prompt
        self.steps = steps
        dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
        if not Path(model).exists() and "/" not in str(model):
            raise WeightsError(f"inpainting model folder not found: {model}")
        try:
            pipeline = diffusers.StableDiffusionInpaintPipeline.from_pretrained(
                str(model), torch_dtype=dtype, local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise WeightsError(
                f"cannot load the inpainting model '{model}' from local files ({exc}). Download a diffusers "
                "inpainting checkpoint and pass its folder to --inpaint-model."
            ) from exc
        pipeline.set_progress_bar_config(disable=True)
        self._pipeline = pipeline.to(device)

    def __call__(self, image: np.ndarray, hole: np.ndarray, seed: int = 0) -> np.ndarray:
        _check(image, hole)
        if not hole.any():
            return image.copy()
        import torch
        from PIL import Image

        height, width = hole.shape
        size = (max(64, width // 8 * 8), max(64, height // 8 * 8))  # the model works on multiples of 8
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        result = self._pipeline(
            prompt=self.prompt,
            image=Image.fromarray(image).resize(size, Image.BICUBIC),
            mask_image=Image.fromarray(hole.astype(np.uint8) * 255).resize(size, Image.NEAREST),
            height=size[1],
            width=size[0],
            num_inference_steps=self.steps,
            generator=generator,
        ).images[0]
        filled = np.asarray(result.convert("RGB").resize((width, height), Image.BICUBIC))
        return composite(image, filled, hole)
