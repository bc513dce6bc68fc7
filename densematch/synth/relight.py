"""Relighting a rendered view for appearance diversity (geometry and ground truth untouched).

The image is taken as the albedo (linearised with ``gamma``) of a surface whose normals come from the depth
map. It is shaded with a physically based model: an ambient term plus several coloured lights (point lights
with inverse-square falloff, or directional lights), each with a Lambertian diffuse term and a Blinn-Phong
specular lobe::

    radiance = albedo * (ambient + sum_i c_i E_i a_i max(0, n.l_i)) + k_s sum_i c_i E_i a_i max(0, n.h_i)^s

then rescaled so that its median luminance is ``brightness`` times the original one, clipped and
gamma-encoded.
Light positions live in the camera frame, in units of the scene's median depth. The published L2M pipeline
relights in Blender with 2-5 coloured point lights; this is the same idea without Blender.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..geometry.warps import pixel_grid, unproject

_LUMA = (0.2126, 0.7152, 0.0722)


@dataclass(frozen=True)
class RelightConfig:
    """Ranges of the sampled lighting (one draw per pair)."""

    probability: float = 1.0  # chance that a pair's image1 is relit at all
    lights: tuple[int, int] = (2, 5)  # number of lights
    point_light_probability: float = (
        0.7  # each light is a point light with this probability, else directional
    )
    coloured_probability: float = (
        0.5  # a light is coloured (channels U(0.5, 1)) with this probability, else white
    )
    ambient: tuple[float, float] = (0.15, 0.5)
    intensity: tuple[float, float] = (0.5, 1.5)
    specular: tuple[float, float] = (0.0, 0.3)  # k_s
    shininess: tuple[float, float] = (8.0, 64.0)
    brightness: tuple[float, float] = (0.7, 1.3)  # relit median luminance / original median luminance
    gamma: float = 2.2


@dataclass(frozen=True)
class Light:
    """A light in the camera frame: ``position`` for a point light, ``direction`` (towards the light) else."""

    colour: tuple[float, float, float]
    intensity: float
    position: tuple[float, float, float] | None = None
    direction: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Lighting:
    """One sampled lighting setup (see :func:`sample_lighting`)."""

    ambient: tuple[float, float, float]
    lights: tuple[Light, ...] = field(default_factory=tuple)
    specular: float = 0.0
    shininess: float = 16.0
    brightness: float = 1.0

    def describe(self) -> dict:
        """A JSON-friendly summary (stored with the pair)."""
        return {
            "ambient": [round(c, 4) for c in self.ambient],
            "lights": [
                {
                    "type": "point" if light.position is not None else "directional",
                    "colour": [round(c, 4) for c in light.colour],
                    "intensity": round(light.intensity, 4),
                }
                for light in self.lights
            ],
            "specular": round(self.specular, 4),
            "shininess": round(self.shininess, 2),
        }


def sample_lighting(rng: np.random.Generator, config: RelightConfig, scene_scale: float) -> Lighting:
    """Draw a :class:`Lighting` from ``config``; point lights are placed around the scene (camera frame)."""
    lights = []
    for _ in range(int(rng.integers(config.lights[0], config.lights[1] + 1))):
        if rng.random() < config.coloured_probability:
            colour = tuple(float(c) for c in rng.uniform(0.5, 1.0, size=3))
        else:
            colour = (1.0, 1.0, 1.0)
        intensity = float(rng.uniform(*config.intensity))
        if rng.random() < config.point_light_probability:
            position = (rng.uniform(-2.0, 2.0), rng.uniform(-2.0, 0.5), rng.uniform(-0.5, 1.5))
            lights.append(Light(colour, intensity, position=tuple(float(p) * scene_scale for p in position)))
        else:
            direction = np.array([rng.uniform(-1, 1), rng.uniform(-1, 0.3), -rng.uniform(0.2, 1.0)])
            direction /= np.linalg.norm(direction)
            lights.append(Light(colour, intensity, direction=tuple(float(d) for d in direction)))
    ambient = float(rng.uniform(*config.ambient))
    return Lighting(
        ambient=(ambient, ambient, ambient),
        lights=tuple(lights),
        specular=float(rng.uniform(*config.specular)),
        shininess=float(rng.uniform(*config.shininess)),
        brightness=float(rng.uniform(*config.brightness)),
    )


def normals_from_depth(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Unit surface normals ``(H, W, 3)`` (camera frame, facing the camera) from a depth map ``(H, W)``.

    Central differences of the back-projected points; pixels without a known depth on both sides of either
    axis get the normal facing the camera, ``(0, 0, -1)``.
    """
    height, width = depth.shape
    grid = pixel_grid(height, width, device=depth.device, dtype=torch.float32).reshape(-1, 2)
    points = unproject(grid, depth.reshape(-1).to(torch.float32), K.to(grid)).reshape(height, width, 3)
    known = depth > 0
    du = torch.zeros_like(points)
    dv = torch.zeros_like(points)
    du[:, 1:-1] = points[:, 2:] - points[:, :-2]
    dv[1:-1] = points[2:] - points[:-2]
    ok = torch.zeros_like(known)
    ok[1:-1, 1:-1] = known[1:-1, 2:] & known[1:-1, :-2] & known[2:, 1:-1] & known[:-2, 1:-1]
    normal = torch.linalg.cross(dv, du, dim=-1)
    facing = torch.tensor([0.0, 0.0, -1.0], device=depth.device)
    length = normal.norm(dim=-1, keepdim=True)
    ok &= length[..., 0] > 0
    normal = torch.where(ok[..., None], normal / length.clamp(min=1e-30), facing)
    flip = (normal * points).sum(-1, keepdim=True) > 0  # must point towards the camera
    return torch.where(flip, -normal, normal)


def relight(
    image: torch.Tensor,
    depth: torch.Tensor,
    K: torch.Tensor,
    lighting: Lighting,
    gamma: float = 2.2,
    shading_stride: int = 4,
) -> torch.Tensor:
    """Shade ``image`` ``(3, H, W)`` in [0, 1] with ``lighting``, using ``depth`` ``(H, W)`` (0 = unknown).

    The shading (smooth by nature) is computed on every ``shading_stride``-th pixel and upsampled
    bilinearly. Pixels with unknown depth are shaded as surfaces facing the camera at the median depth.
    """
    height, width = depth.shape
    stride = max(1, int(shading_stride))
    small_K = K.to(torch.float32).clone()
    small_K[:2] /= stride
    diffuse, specular = shading(depth[::stride, ::stride], small_K, lighting)
    if stride > 1:
        both = torch.cat((diffuse, specular))[None]
        both = torch.nn.functional.interpolate(
            both, size=(height, width), mode="bilinear", align_corners=False
        )
        diffuse, specular = both[0, :3], both[0, 3:]
    albedo = image.to(torch.float32).clamp(0, 1) ** gamma
    radiance = albedo * diffuse + lighting.specular * specular
    luma = torch.tensor(_LUMA, device=image.device)[:, None, None]
    sample = (slice(None), slice(None, None, stride), slice(None, None, stride))  # medians on a subsample
    target = lighting.brightness * (albedo[sample] * luma).sum(0).median()
    current = (radiance[sample] * luma).sum(0).median().clamp(min=1e-6)
    return (radiance * (target / current)).clamp_(0, 1) ** (1.0 / gamma)


def shading(depth: torch.Tensor, K: torch.Tensor, lighting: Lighting) -> tuple[torch.Tensor, torch.Tensor]:
    """Diffuse irradiance and specular radiance ``(3, H, W)`` for unit albedo, from ``depth`` ``(H, W)``."""
    height, width = depth.shape
    device = depth.device
    known = depth > 0
    fill = depth[known].median() if known.any() else torch.tensor(1.0, device=device)
    normals = normals_from_depth(torch.where(known, depth, 0.0), K).permute(2, 0, 1)  # (3, H, W)
    grid = pixel_grid(height, width, device=device, dtype=torch.float32).reshape(-1, 2)
    filled = torch.where(known, depth, fill).reshape(-1).to(torch.float32)
    points = unproject(grid, filled, K.to(grid)).T.reshape(3, height, width)
    view = -points / points.norm(dim=0, keepdim=True).clamp(min=1e-12)
    diffuse = torch.tensor(lighting.ambient, device=device)[:, None, None].expand(3, height, width).clone()
    specular = torch.zeros_like(diffuse)
    for light in lighting.lights:
        colour = (torch.tensor(light.colour, device=device) * light.intensity)[:, None, None]
        if light.position is not None:
            to_light = torch.tensor(light.position, device=device)[:, None, None] - points
            distance = to_light.norm(dim=0, keepdim=True).clamp(min=1e-12)
            to_light = to_light / distance
            falloff = fill**2 / (fill**2 + distance**2)  # inverse square, 1/2 at the scene's median depth
        else:
            to_light = torch.tensor(light.direction, device=device)[:, None, None].expand_as(points)
            falloff = torch.ones_like(points[:1])
        lambert = (normals * to_light).sum(0, keepdim=True).clamp(min=0)
        half = to_light + view
        half = half / half.norm(dim=0, keepdim=True).clamp(min=1e-12)
        lobe = (normals * half).sum(0, keepdim=True).clamp(min=0) ** lighting.shininess * (lambert > 0)
        diffuse = diffuse + colour * (falloff * lambert)
        specular = specular + colour * (falloff * lobe)
    return diffuse, specular
