"""Helpers shared by the training and dataset tests.

* A textured plane seen by two pinhole cameras: depth maps, intrinsics, relative pose and the
  plane-induced homography are all consistent, so every GT warp can be checked independently.
* Stand-in models with the training interface of the RoMa family (``model({"im_A", "im_B"}) ->
  corresps``), without BatchNorm so that DDP and single-process runs agree exactly.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from densematch.models.contract import InputSpec


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix from small angles (radians) about x, y, z."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def intrinsics(width: int, height: int, focal_scale: float = 1.0) -> np.ndarray:
    """OpenCV intrinsics with the principal point at the image centre."""
    f = focal_scale * 0.9 * max(width, height)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])


def plane_depth(K: np.ndarray, normal: np.ndarray, offset: float, width: int, height: int) -> np.ndarray:
    """Depth (H, W) of the plane ``normal . X = offset`` seen by a camera with OpenCV intrinsics K."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(K).T
    return offset / (rays @ normal)


class PlaneScene:
    """Camera 0 at the origin, camera 1 at ``T_0to1``; a plane ``normal . X = offset`` in camera-0 frame."""

    def __init__(self, size0=(64, 48), size1=None, seed: int = 0, motion: float = 1.0):
        rng = np.random.default_rng(seed)
        self.size0 = size0
        self.size1 = size1 or size0
        self.K0 = intrinsics(*self.size0)
        self.K1 = intrinsics(*self.size1, focal_scale=1.0 + 0.1 * rng.uniform(-1, 1))
        normal = np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), 1.0])
        self.normal = normal / np.linalg.norm(normal)
        self.offset = rng.uniform(4.0, 6.0)
        R = rotation(*(motion * rng.uniform(-0.08, 0.08, size=3)))
        t = motion * np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)])
        self.T_0to1 = np.eye(4)
        self.T_0to1[:3, :3], self.T_0to1[:3, 3] = R, t

    @property
    def H_0to1(self) -> np.ndarray:
        """Plane-induced homography mapping OpenCV pixels of image 0 to image 1."""
        R, t = self.T_0to1[:3, :3], self.T_0to1[:3, 3]
        H = self.K1 @ (R + np.outer(t, self.normal) / self.offset) @ np.linalg.inv(self.K0)
        return H / H[2, 2]

    def depth0(self) -> np.ndarray:
        return plane_depth(self.K0, self.normal, self.offset, *self.size0)

    def depth1(self) -> np.ndarray:
        R, t = self.T_0to1[:3, :3], self.T_0to1[:3, 3]
        normal1 = R @ self.normal
        return plane_depth(self.K1, normal1, self.offset + normal1 @ t, *self.size1)


def apply_homography(H: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Map pixels (..., 2) with a 3x3 homography."""
    homogeneous = np.concatenate([uv, np.ones_like(uv[..., :1])], axis=-1) @ H.T
    return homogeneous[..., :2] / homogeneous[..., 2:]


def smooth_texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A random, smooth, well-textured uint8 RGB image (H, W, 3)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, size=(max(height // 4, 2), max(width // 4, 2), 3)).astype(np.float32)
    image = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(image, 0, 255).astype(np.uint8)


def _cell_grid(batch: int, height: int, width: int, device) -> torch.Tensor:
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=device)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=0)[None].expand(batch, 2, height, width)


class _Refiner(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(2 * dim + 2, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1)
        )

    def forward(self, fa, fb, flow):
        warped = F.grid_sample(fb, flow.permute(0, 2, 3, 1), align_corners=False)
        delta = self.conv(torch.cat((fa, warped, flow), dim=1))
        return flow + 0.1 * delta[:, :2], delta[:, 2:]


class _Contract:
    """The model contract's training side, as the RoMa family has it (densematch.models.api.RomatchAPI)."""

    def training_forward(self, batch):
        return self({"im_A": batch["image0"], "im_B": batch["image1"]})


class StandInTinyRoma(_Contract, nn.Module):
    """Tiny-RoMa-shaped: softmax matching at stride 8, refinement at 8 and 4 -> ``corresps[8], [4]``."""

    input_spec = InputSpec(channels="rgb", normalisation="unit", size_multiple=32)

    def __init__(self, dim: int = 8):
        super().__init__()
        self.coarse = nn.Conv2d(3, dim, 8, stride=8)
        self.fine = nn.Conv2d(3, dim, 4, stride=4)
        self.refine8 = _Refiner(dim)
        self.refine4 = _Refiner(dim)

    def forward(self, batch):
        a, b = batch["im_A"], batch["im_B"]
        fa, fb = self.coarse(a), self.coarse(b)
        n, c, h, w = fa.shape
        corr = torch.einsum("nchw,ncij->nhwij", fa, fb).reshape(n, h * w, -1) / c**0.5
        grid = _cell_grid(n, h, w, a.device).reshape(n, 2, -1)
        flow = torch.einsum("nqk,nck->ncq", corr.softmax(dim=-1), grid).reshape(n, 2, h, w)
        flow8, cert8 = self.refine8(fa, fb, flow)
        up = F.interpolate(flow8.detach(), scale_factor=2, mode="bilinear", align_corners=False)
        flow4, cert4 = self.refine4(self.fine(a), self.fine(b), up)
        return {
            8: {"flow": flow8, "certainty": cert8},
            4: {
                "flow": flow4,
                "certainty": cert4
                + F.interpolate(cert8.detach(), scale_factor=2, mode="bilinear", align_corners=False),
            },
        }


class StandInRoma(_Contract, nn.Module):
    """RoMa-shaped: anchor classification (8 x 8 anchors) at scale 16, refinement at 16, 8 and 4.

    Its parameter names mimic RoMa's groups: ``encoder.cnn.*`` (backbone), ``encoder.dinov2.*`` (frozen).
    """

    input_spec = InputSpec(channels="rgb", normalisation="imagenet", size_multiple=16)

    def __init__(self, dim: int = 8, anchors: int = 8):
        super().__init__()
        self.encoder = nn.ModuleDict(
            {"cnn": nn.Conv2d(3, dim, 4, stride=4), "dinov2": nn.Conv2d(3, dim, 16, stride=16)}
        )
        self.decoder = nn.ModuleDict(
            {
                "cls": nn.Conv2d(2 * dim, anchors * anchors + 1, 1),
                "down": nn.Conv2d(dim, dim, 2, stride=2),
                "r16": _Refiner(dim),
                "r8": _Refiner(dim),
                "r4": _Refiner(dim),
            }
        )
        self.anchors = anchors

    def forward(self, batch):
        a, b = batch["im_A"], batch["im_B"]
        ga, gb = self.encoder["dinov2"](a), self.encoder["dinov2"](b)
        n, _, h, w = ga.shape
        logits = self.decoder["cls"](torch.cat((ga, gb.mean(dim=(2, 3), keepdim=True).expand_as(gb)), dim=1))
        gm_cls, gm_certainty = logits[:, :-1], logits[:, -1:]
        lin = torch.linspace(-1 + 1 / self.anchors, 1 - 1 / self.anchors, self.anchors, device=a.device)
        anchors = torch.stack(torch.meshgrid(lin, lin, indexing="ij")[::-1], dim=-1).reshape(-1, 2)
        flow = torch.einsum("nkhw,kc->nchw", gm_cls.detach().softmax(dim=1), anchors)
        corresps = {}
        f4a, f4b = self.encoder["cnn"](a), self.encoder["cnn"](b)
        f8a, f8b = self.decoder["down"](f4a), self.decoder["down"](f4b)
        certainty = gm_certainty
        for scale, fa, fb, refiner in ((16, ga, gb, "r16"), (8, f8a, f8b, "r8"), (4, f4a, f4b, "r4")):
            if flow.shape[-2:] != fa.shape[-2:]:
                flow = F.interpolate(flow.detach(), size=fa.shape[-2:], mode="bilinear", align_corners=False)
                certainty = F.interpolate(
                    certainty.detach(), size=fa.shape[-2:], mode="bilinear", align_corners=False
                )
            flow, delta_cert = self.decoder[refiner](fa, fb, flow)
            certainty = certainty + delta_cert
            corresps[scale] = {"flow": flow, "certainty": certainty}
        corresps[16].update(gm_cls=gm_cls, gm_certainty=gm_certainty)
        return corresps


def write_image_folder(folder, count: int = 3, size=(96, 80)) -> list:
    """A folder of random textured PNG images; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i:02d}.png"
        cv2.imwrite(str(path), smooth_texture(*size, seed=100 + i))
        paths.append(path)
    return paths
