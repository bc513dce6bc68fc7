"""Image-level matching for S2LD: grey reading as upstream, resizing, padding, filters, mapping back.

Images are read as upstream's MegaDepth test loader does: ``cv2.imread(path, IMREAD_GRAYSCALE)`` (PIL images
and RGB arrays are converted with ``cv2.cvtColor(RGB2GRAY)``), the longer side is scaled to ``resize``
(``int(round(.))``), both sides are floored to multiples of 8 and the image is resized with ``cv2.resize``
(INTER_LINEAR); an image already at that size is not resampled. Matches are mapped back to the image as given
with the OpenCV pixel convention ``x_given = (x_net + 0.5) * W_given / W_net - 0.5`` (upstream multiplies by
the size ratio, which shifts points by ``0.5 * (ratio - 1)`` px; a deliberate difference).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ...errors import ImageReadError, InputShapeError
from .config import InferenceConfig, ScoreFilter


def read_grey(source) -> np.ndarray:
    """``(H, W)`` uint8 grey image from a path, PIL image or uint8 ``(H, W)``/``(H, W, 3)`` RGB array."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageReadError(f"image file not found: {path}")
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ImageReadError(f"cannot read image {path}: not an image or corrupt")
        return image
    if isinstance(source, Image.Image):
        source = np.asarray(source.convert("RGB"))
    if isinstance(source, np.ndarray) and source.dtype == np.uint8:
        if source.ndim == 2:
            return source
        if source.ndim == 3 and source.shape[2] == 3:
            return cv2.cvtColor(np.ascontiguousarray(source), cv2.COLOR_RGB2GRAY)
    what = f"{source.dtype} array of shape {source.shape}" if isinstance(source, np.ndarray) else type(source).__name__
    raise ImageReadError(f"cannot read an image from a {what}; pass a path, a PIL image or a uint8 (H, W[, 3]) array")


def network_size(width: int, height: int, resize: int | None, multiple: int = 8) -> tuple[int, int]:
    """``(W, H)`` the network sees: longer side scaled to ``resize``, both floored to ``multiple``."""
    if resize is not None:
        scale = resize / max(width, height)
        width, height = int(round(width * scale)), int(round(height * scale))
    return width // multiple * multiple, height // multiple * multiple


def prepare(grey: np.ndarray, resize: int | None, pad_to_square: bool, device, name: str):
    """-> ``(1, 1, H, W)`` float tensor, coarse mask or None, ``(W, H)`` network size of the content."""
    h, w = grey.shape
    size = network_size(w, h, resize)
    if min(size) < 8:
        raise InputShapeError(f"{name} ({w}x{h} px) is smaller than one 8 px coarse cell at resize={resize}")
    if size != (w, h):
        grey = cv2.resize(grey, size)
    image = torch.from_numpy(grey).float()[None, None] / 255.0
    mask = None
    if pad_to_square:
        side = max(size[0], size[1], resize or 0)
        padded = torch.zeros(1, 1, side, side)
        padded[..., : size[1], : size[0]] = image
        valid = torch.zeros(1, 1, side, side)
        valid[..., : size[1], : size[0]] = 1
        mask = F.interpolate(valid, scale_factor=0.125, mode="nearest", recompute_scale_factor=False)[:, 0].bool()
        image = padded
    return image.to(device), (mask.to(device) if mask is not None else None), size


def score_filter_mask(scores: torch.Tensor, config: ScoreFilter) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream ``filter_matches``: (keep mask, max-normalised scores)."""
    if scores.numel() > 0:
        scores = scores / (scores.max() + 1e-5)
    threshold = config.threshold
    keep = scores >= threshold
    while threshold >= 0.0:
        keep = scores >= threshold
        if keep.sum() > config.min_matches:
            break
        threshold = threshold - config.step
    return keep, scores


def select(out: dict, cfg: InferenceConfig, size0: tuple[int, int], size1: tuple[int, int]) -> dict:
    kpts0, kpts1, conf, kp_scores = out["mkpts0_f"], out["mkpts1_f"], out["mconf"], out["mscore"]
    keep = torch.ones_like(conf, dtype=torch.bool)
    if cfg.score_filter is not None:
        keep, kp_scores = score_filter_mask(kp_scores, cfg.score_filter)
    if cfg.min_keypoint_score is not None:
        keep &= kp_scores > cfg.min_keypoint_score
    if cfg.min_confidence is not None:
        keep &= conf > cfg.min_confidence
    if cfg.border_margin is not None:
        m = cfg.border_margin
        for pts, (w, h) in ((kpts0, size0), (kpts1, size1)):
            keep &= (pts[:, 0] >= m) & (pts[:, 1] >= m) & (pts[:, 0] <= w - 1 - m) & (pts[:, 1] <= h - 1 - m)
    kpts0, kpts1, conf, kp_scores = kpts0[keep], kpts1[keep], conf[keep], kp_scores[keep]
    if cfg.max_matches is not None and len(conf) > cfg.max_matches:
        top = torch.topk(conf, cfg.max_matches).indices
        kpts0, kpts1, conf, kp_scores = kpts0[top], kpts1[top], conf[top], kp_scores[top]
    return {"kpts0": kpts0, "kpts1": kpts1, "scores": conf, "keypoint_scores": kp_scores}


def to_given(points: torch.Tensor, net_size: tuple[int, int], given_size: tuple[int, int]) -> torch.Tensor:
    ratio = points.new_tensor([given_size[0] / net_size[0], given_size[1] / net_size[1]])
    return (points + 0.5) * ratio - 0.5


@dataclass(frozen=True)
class S2LDImageFeatures:
    """The per-image part of S2LD's matching (:func:`extract`): backbone, keypoints and adjusted coarse features
    (:meth:`S2LD.encode_image`), the coarse padding mask, the network size and the size as given, ``(W, H)``."""

    encoded: dict
    mask: torch.Tensor | None
    network_size: tuple[int, int]
    given_size: tuple[int, int]


@torch.inference_mode()
def extract(model, image) -> S2LDImageFeatures:
    """See :meth:`S2LD.extract`."""
    cfg: InferenceConfig = model.inference
    parameter = next(model.parameters())
    grey = read_grey(image)
    tensor, mask, size = prepare(grey, cfg.resize, cfg.pad_to_square, parameter.device, "image")
    return S2LDImageFeatures(model.encode_image(tensor.to(parameter.dtype)), mask, size, grey.shape[::-1])


@torch.inference_mode()
def match_features(model, features0: S2LDImageFeatures, features1: S2LDImageFeatures) -> dict:
    """See :meth:`S2LD.match_features`."""
    out = model.match_encoded(model.join_encoded(features0.encoded, features1.encoded), features0.mask,
                              features1.mask)
    return _to_result(out, model.inference, (features0.network_size, features0.given_size),
                      (features1.network_size, features1.given_size))


@torch.inference_mode()
def match_images(model, image0, image1) -> dict:
    """See :meth:`S2LD.match_images`."""
    cfg: InferenceConfig = model.inference
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    grey0, grey1 = read_grey(image0), read_grey(image1)
    t0, mask0, size0 = prepare(grey0, cfg.resize, cfg.pad_to_square, device, "image0")
    t1, mask1, size1 = prepare(grey1, cfg.resize, cfg.pad_to_square, device, "image1")
    out = model(t0.to(dtype), t1.to(dtype), mask0, mask1)
    return _to_result(out, cfg, (size0, grey0.shape[::-1]), (size1, grey1.shape[::-1]))


def _to_result(out: dict, cfg: InferenceConfig, sizes0: tuple, sizes1: tuple) -> dict:
    """The selected matches of network output ``out`` in the images as given; ``sizes0/1``: ``(network size,
    size as given)`` of each image, both ``(W, H)``."""
    (net0, given0), (net1, given1) = sizes0, sizes1
    result = select(out, cfg, net0, net1)
    result["kpts0"] = to_given(result["kpts0"].float(), net0, given0)
    result["kpts1"] = to_given(result["kpts1"].float(), net1, given1)
    result["scores"] = result["scores"].float()
    result["keypoint_scores"] = result["keypoint_scores"].float()
    return result
