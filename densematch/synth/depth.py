"""Where the engine's depth comes from: per-image files, a monocular depth model, or a procedural prior.

A *depth source* is a callable ``source(name, image, crop, rng) -> (R, R) float32`` returning, for the
prepared (resized and cropped) image, raw values of its kind (``source.kind``: ``"depth"`` or
``"disparity"``); 0 or non-finite = unknown. :func:`values_to_depth` turns them into depth.

* :class:`FolderDepth`: ``<stem>.npy`` (float array) or ``<stem>.png`` (16- or 8-bit single channel) per
  image, at the resolution of the original image.
* :class:`MonocularDepth`: a ``transformers`` "depth-estimation" pipeline (e.g. Depth Anything V2) from a
  local checkpoint; its output is relative disparity.
* :class:`~densematch.synth.prior.ProceduralDepth`: piecewise-planar scenes, no weights needed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageReadError, InputShapeError, WeightsError, require
from .camera import CropResize

DEPTH_KINDS = ("depth", "disparity")
DEPTH_SUFFIXES = (".npy", ".png")


def values_to_depth(values: np.ndarray, kind: str, *, disparity_floor: float = 0.01) -> np.ndarray:
    """Raw depth-source values -> depth (float32, 0 = unknown).

    ``kind="depth"``: used as is. ``kind="disparity"`` (relative, up to scale and shift): as in L2M, min-max
    normalised over the known pixels to ``[0, 1]``, then ``depth = 1 / (disparity + disparity_floor)``, so the
    nearest surface is at depth ~1 and the farthest at ``1 / disparity_floor``.
    """
    if kind not in DEPTH_KINDS:
        raise ValueError(f"unknown depth kind {kind!r}; expected one of {DEPTH_KINDS}")
    values = np.asarray(values, dtype=np.float32)
    known = np.isfinite(values) & (values > 0)
    if kind == "depth":
        return np.where(known, values, 0).astype(np.float32)
    if not known.any():
        return np.zeros_like(values)
    low, high = float(values[known].min()), float(values[known].max())
    normalised = (values - low) / (high - low) if high > low else np.ones_like(values)
    return np.where(known, 1.0 / (normalised + disparity_floor), 0).astype(np.float32)


def read_depth_file(path) -> np.ndarray:
    """Read a depth/disparity map: ``.npy`` (2D, or ``(H, W, 1)``) or a single-channel PNG -> float32."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"depth map not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ImageReadError(f"cannot read depth map {path}: {exc}") from exc
    else:
        values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if values is None:
            raise ImageReadError(f"cannot read depth map {path}")
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[..., 0]
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.number):
        raise InputShapeError(
            f"depth map {path} must be a single-channel (H, W) array, got {values.dtype} {values.shape}"
        )
    return values.astype(np.float32)


class FolderDepth:
    """Per-image maps ``DIR/<stem>.npy`` or ``DIR/<stem>.png`` at the original image resolution."""

    def __init__(self, folder, kind: str = "disparity"):
        if kind not in DEPTH_KINDS:
            raise ValueError(f"unknown depth kind {kind!r}; expected one of {DEPTH_KINDS}")
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ImageReadError(f"depth folder not found: {self.folder}")
        self.kind = kind

    def path_for(self, name: str) -> Path:
        """The depth file of image ``name`` (its stem), or an :class:`ImageReadError`."""
        for suffix in DEPTH_SUFFIXES:
            candidate = self.folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
        raise ImageReadError(
            f"no depth map for image '{name}' in {self.folder} (looked for {name}.npy, {name}.png)"
        )

    def __call__(
        self, name: str, image: np.ndarray, crop: CropResize, rng: np.random.Generator
    ) -> np.ndarray:
        path = self.path_for(name)
        return crop.values(read_depth_file(path), what=f"depth map {path.name}")


class MonocularDepth:
    """A monocular depth model run through ``transformers.pipeline("depth-estimation")`` on local weights.

    Args:
        model: a local checkpoint folder (e.g. a downloaded ``depth-anything/Depth-Anything-V2-Small-hf``) or
            a model id already in the local Hugging Face cache. Nothing is downloaded.
        kind: what the model predicts: ``"disparity"`` (relative, Depth Anything) or ``"depth"`` (metric).
        device: torch device string.
    """

    def __init__(self, model: str, kind: str = "disparity", device: str = "cpu"):
        if kind not in DEPTH_KINDS:
            raise ValueError(f"unknown depth kind {kind!r}; expected one of {DEPTH_KINDS}")
        transformers = require("transformers", "depth", "--depth-model (monocular depth estimation)")
        self.kind = kind
        try:
            self._pipeline = transformers.pipeline(
                "depth-estimation", model=str(model), device=device, model_kwargs={"local_files_only": True}
            )
        except (OSError, ValueError) as exc:
            raise WeightsError(
                f"cannot load the depth model '{model}' from local files ({exc}). Download the checkpoint "
                f"(e.g. depth-anything/Depth-Anything-V2-Small-hf) and pass its folder to --depth-model."
            ) from exc

    def __call__(
        self, name: str, image: np.ndarray, crop: CropResize, rng: np.random.Generator
    ) -> np.ndarray:
        import torch
        from PIL import Image

        output = self._pipeline(Image.fromarray(image))
        predicted = torch.as_tensor(output["predicted_depth"], dtype=torch.float32)
        predicted = predicted.reshape(1, 1, *predicted.shape[-2:])
        resized = torch.nn.functional.interpolate(
            predicted, size=image.shape[:2], mode="bilinear", align_corners=False
        )
        return resized[0, 0].cpu().numpy()
