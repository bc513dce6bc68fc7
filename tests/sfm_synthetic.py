"""Synthetic image collections with known homographies, and a fake dense matcher, for the sfm tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from densematch.matchers.base import Matches, PairMatcher


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A uint8 greyscale texture with blobs at several scales (SIFT finds many keypoints on it)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width), np.float32)
    for sigma in (1.5, 3.0, 6.0):
        noise = rng.normal(size=(height, width)).astype(np.float32)
        image += cv2.GaussianBlur(noise, (0, 0), sigma) * sigma
    image = (image - image.min()) / (image.max() - image.min())
    return (image * 255).astype(np.uint8)


def homography(seed: int, size: tuple[int, int], strength: float = 0.08) -> np.ndarray:
    """A random mild homography of an image of ``size`` (corner displacement ~ strength * size)."""
    rng = np.random.default_rng(seed)
    w, h = size
    corners = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    moved = corners + rng.uniform(-strength, strength, size=(4, 2)).astype(np.float32) * np.float32([w, h])
    return cv2.getPerspectiveTransform(corners, moved).astype(np.float64)


def make_collection(folder: Path, count: int = 3, base: tuple[int, int] = (240, 180), seed: int = 0):
    """Write ``count`` PNG views of one textured plane; returns ``{name: (H_world_to_image, (w, h))}``.

    Each view has a different size (the fake matcher recognises images by size). ``H`` maps OpenCV pixel
    coordinates of the world texture to those of the view.
    """
    folder.mkdir(parents=True, exist_ok=True)
    world = texture(base[0] + 80, base[1] + 60, seed)
    shift = np.array([[1, 0, -40], [0, 1, -30], [0, 0, 1]], np.float64)  # views look at the texture centre
    views = {}
    for i in range(count):
        size = (base[0] + 4 * i, base[1] + 2 * i)
        H = homography(seed * 100 + i, size) @ shift
        image = cv2.warpPerspective(world, H, size, flags=cv2.INTER_LINEAR)
        name = f"view_{i:02d}.png"
        Image.fromarray(image).save(folder / name)
        views[name] = (H, size)
    return views


def apply_h(H: np.ndarray, uv: np.ndarray) -> np.ndarray:
    xyz = np.concatenate([uv, np.ones((len(uv), 1))], axis=1) @ H.T
    return xyz[:, :2] / xyz[:, 2:]


class FakeDenseMatcher(PairMatcher):
    """A dense matcher that knows the true homographies: it samples ``num`` points in image 0 and maps them.

    Images are recognised by their size. The samples depend only on the pair (seeded by the sizes),
    plus ``noise`` pixels of Gaussian jitter; scores are uniform in [0.2, 1).
    """

    name = "fake-dense"

    def __init__(self, views: dict, num: int = 400, noise: float = 0.2, fail_after: int | None = None):
        self.by_size = {size: H for H, size in views.values()}
        self.num, self.noise = num, noise
        self.fail_after = fail_after
        self.calls = 0
        self.batches: list[int] = []

    @property
    def is_dense(self) -> bool:
        return True

    def match_pair(self, image0, image1) -> Matches:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        size0, size1 = image0.size, image1.size
        H = self.by_size[size1] @ np.linalg.inv(self.by_size[size0])
        rng = np.random.default_rng([*size0, *size1])
        kpts0 = rng.uniform(-0.5, np.array(size0) - 0.5, size=(self.num, 2))
        kpts1 = apply_h(H, kpts0) + rng.normal(scale=self.noise, size=(self.num, 2))
        inside = (kpts1 >= -0.5).all(1) & (kpts1 < np.array(size1) - 0.5).all(1)
        scores = rng.uniform(0.2, 1.0, size=self.num)
        return Matches(kpts0[inside], kpts1[inside], scores[inside], size0, size1)


class BatchingFakeDenseMatcher(FakeDenseMatcher):
    """The fake matcher with ``match_batch`` (records the batch sizes it received)."""

    def match_batch(self, pairs):
        self.batches.append(len(pairs))
        return [self.match_pair(image0, image1) for image0, image1 in pairs]


def look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera rotation (OpenCV axes: x right, y down, z forward) of a camera at ``position``."""
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def make_corner_scene(folder: Path, count: int = 6, size: tuple[int, int] = (320, 240), focal: float = 280.0):
    """Views of the inside corner of a textured box (floor z = 0 and walls x = 0, y = 0; 4 x 4 x 3 units).

    Cameras stand inside the box on an arc and look at the corner, so no face hides another. Returns
    ``{name: (K, R, t)}`` with world-to-camera ``x_cam = R @ X + t`` and OpenCV intrinsics ``K``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    K = np.array([[focal, 0, (w - 1) / 2], [0, focal, (h - 1) / 2], [0, 0, 1.0]])
    pixels_per_unit = 120
    faces = [  # origin, axis u, axis v (world units), extent along u and v
        (np.zeros(3), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), (4.0, 4.0)),  # floor
        (np.zeros(3), np.array([0, 1.0, 0]), np.array([0, 0, 1.0]), (4.0, 3.0)),  # wall x = 0
        (np.zeros(3), np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), (4.0, 3.0)),  # wall y = 0
    ]
    textures = [
        texture(int(eu * pixels_per_unit), int(ev * pixels_per_unit), seed=10 + i)
        for i, (_, _, _, (eu, ev)) in enumerate(faces)
    ]
    views = {}
    for k in range(count):
        angle = np.radians(20 + 50 * k / max(count - 1, 1))
        position = np.array([3.6 * np.cos(angle), 3.6 * np.sin(angle), 1.6 + 0.3 * np.sin(3 * k)])
        R = look_at(position, np.array([0.6, 0.6, 0.8]))
        t = -R @ position
        image = np.zeros((h, w), np.uint8)
        for (origin, axis_u, axis_v, _), tex in zip(faces, textures, strict=True):
            # texture pixel (i, j) <-> world origin + (i + 0.5) / ppu * u + (j + 0.5) / ppu * v
            step_u, step_v = axis_u / pixels_per_unit, axis_v / pixels_per_unit
            corner = origin + 0.5 * (step_u + step_v)
            H = K @ np.column_stack([R @ step_u, R @ step_v, R @ corner + t])
            warped = cv2.warpPerspective(tex, H, size, flags=cv2.INTER_LINEAR)
            mask = cv2.warpPerspective(np.full(tex.shape, 255, np.uint8), H, size, flags=cv2.INTER_NEAREST)
            image[mask > 0] = warped[mask > 0]
        name = f"corner_{k:02d}.png"
        Image.fromarray(image).save(folder / name)
        views[name] = (K, R, t)
    return views
