"""Image, depth and camera transforms shared by the pair datasets.

Every function keeps images, depth maps and intrinsics consistent under the OpenCV pixel convention
of :mod:`densematch.conventions` (the centre of the top-left pixel is (0, 0)).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..conventions import pixel_to_normalized
from ..geometry.camera import rescale_intrinsics
from ..geometry.warps import warp_from_depth
from ..io import load_image
from ..preprocess import imagenet_normalize, to_tensor  # noqa: F401  (re-exported for the datasets)


def capped_indices(count: int, limit: int, seed) -> np.ndarray:
    """Indices of ``count`` items, or a sorted random subset of ``limit`` of them (seeded by ``seed``)."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, limit, replace=False))


def parse_resolution(value) -> tuple[int, int]:
    """``512``, ``"512"``, ``"384x512"`` (H x W) or ``(384, 512)`` -> ``(height, width)``."""
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        value = tuple(int(p) for p in parts) if len(parts) > 1 else int(parts[0])
    if isinstance(value, int):
        value = (value, value)
    height, width = (int(v) for v in value)
    if height <= 0 or width <= 0:
        raise ValueError(f"resolution must be positive, got {height}x{width}")
    return height, width


def load_resized(path, size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """Read an RGB image and resize it (PIL bicubic, as romatch) to ``size = (H, W)``.

    Returns the ``(3, H, W)`` float32 image in [0, 1] and the original ``(width, height)``.
    """
    image = load_image(path)
    return to_tensor(image, size), image.size


def resize_depth(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a depth map ``(h, w)`` bilinearly to ``size = (H, W)`` (as romatch's dataset readers)."""
    if tuple(depth.shape[-2:]) == tuple(size):
        return depth.float()
    return F.interpolate(depth[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]


def scale_intrinsics(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics of an image resized from ``(W, H)`` to ``(W', H')``.

    OpenCV convention: a pixel ``u`` moves to ``u' = s (u + 0.5) - 0.5``.
    """
    return rescale_intrinsics(K, (to_size[0] / from_size[0], to_size[1] / from_size[1]))


def corner_to_opencv(K: np.ndarray) -> np.ndarray:
    """Intrinsics in the pixel-corner convention (COLMAP, MegaDepth scene info) -> OpenCV convention."""
    K = np.array(K, dtype=np.float64).reshape(3, 3)
    K[:2, 2] -= 0.5
    return K


def shift(image: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate ``(..., H, W)`` by whole pixels (content moves right/down by dx/dy), filling with 0.

    The intrinsics of the shifted image have their principal point moved by ``(dx, dy)``.
    """
    out = torch.zeros_like(image)
    height, width = image.shape[-2:]
    src_y, dst_y = _ranges(dy, height)
    src_x, dst_x = _ranges(dx, width)
    out[..., dst_y, dst_x] = image[..., src_y, src_x]
    return out


def _ranges(offset: int, length: int) -> tuple[slice, slice]:
    if offset >= 0:
        return slice(0, max(length - offset, 0)), slice(offset, length)
    return slice(-offset, length), slice(0, max(length + offset, 0))


def hflip_intrinsics(K: np.ndarray, width: int) -> np.ndarray:
    """Intrinsics of a horizontally flipped image (u' = W - 1 - u)."""
    flip = np.array([[-1.0, 0, width - 1], [0, 1, 0], [0, 0, 1]])
    return flip @ K


def depth_pair_sample(image0, image1, depth0, depth1, K0, K1, T_0to1) -> dict:
    """A pair sample (:mod:`densematch.data`) with ``warp0``/``valid0`` computed from depth and pose.

    Images ``(3, H, W)`` in [0, 1], depths ``(H, W)`` (0 = unknown), OpenCV ``K`` at the images' sizes.
    """
    K0 = torch.as_tensor(np.asarray(K0), dtype=torch.float32)
    K1 = torch.as_tensor(np.asarray(K1), dtype=torch.float32)
    T_0to1 = torch.as_tensor(np.asarray(T_0to1), dtype=torch.float32)
    uv1, valid0 = warp_from_depth(depth0.double(), K0.double(), K1.double(), T_0to1.double(), depth1.double())
    height1, width1 = image1.shape[-2:]
    warp0 = pixel_to_normalized(uv1, width1, height1).float()
    return {
        "image0": image0,
        "image1": image1,
        "warp0": torch.where(valid0[..., None], warp0, torch.zeros_like(warp0)),
        "valid0": valid0,
        "K0": K0,
        "K1": K1,
        "T_0to1": T_0to1,
        "depth0": depth0.float(),
        "depth1": depth1.float(),
    }


def augment_depth_pair(views: list[dict], rng: np.random.Generator, *, shake_t: int = 0, hflip: bool = False):
    """romatch's MegaDepth augmentation on two views in place.

    Each view is ``{"image": (3,H,W), "depth": (H,W), "K": (3,3) OpenCV}``. ``shake_t``: both views move
    by the same random whole-pixel translation in ``[-shake_t, shake_t]^2`` (uncovered pixels are 0, so
    their depth is unknown); ``hflip``: both views flip horizontally with probability 0.5.
    """
    if shake_t > 0:
        dx, dy = (int(v) for v in rng.integers(-shake_t, shake_t + 1, size=2))
        for view in views:
            view["image"], view["depth"] = shift(view["image"], dx, dy), shift(view["depth"], dx, dy)
            view["K"] = view["K"].copy()
            view["K"][:2, 2] += (dx, dy)
    if hflip and rng.random() > 0.5:
        for view in views:
            width = view["image"].shape[-1]
            view["image"], view["depth"] = view["image"].flip(-1), view["depth"].flip(-1)
            view["K"] = hflip_intrinsics(view["K"], width)
    return views


def augmented_pair_sample(
    views: list[dict], T_0to1, rng: np.random.Generator, *, shake_t: int = 0, hflip: bool = False
) -> dict:
    """:func:`augment_depth_pair` on two views, then their :func:`depth_pair_sample`."""
    view0, view1 = augment_depth_pair(views, rng, shake_t=shake_t, hflip=hflip)
    return depth_pair_sample(
        view0["image"], view1["image"], view0["depth"], view1["depth"], view0["K"], view1["K"], T_0to1
    )
