"""The L2M data engine: single images -> training pairs with exact dense ground truth.

For every image: prepare it (short side to ``resolution``, centre crop), get its depth (a depth source),
optionally mask the sky, sample intrinsics, lift it to a mesh (one vertex per pixel), then for every pair
sample a novel camera, render it with the z-buffered rasteriser, compute ``valid0`` (covisible, not a hole),
fill the holes (inpainting) and relight the new view. ``image0`` is the prepared source, ``image1`` the
rendered view; the ground truth is ``warp_from_depth(depth0, K0, K1, T_0to1)`` where ``valid0``.

Everything random is drawn from generators seeded by ``(seed, image name, pair index)``, so a pair does
not depend on the order in which images are processed (deterministic, resumable, shardable).

>>> engine = SynthEngine(SynthConfig(resolution=512), ProceduralDepth())
>>> pairs = engine.pairs_for_image("photo", image)          # list of SynthPair
>>> run_folder(engine, "images/", "out/")  # densematch.synth.folder: writes out/pairs.json + pair folders
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DensematchError, InputShapeError
from .camera import CropResize, PoseRanges, sample_intrinsics, sample_relative_pose
from .depth import values_to_depth
from .holes import covisible_mask, edge_pixels
from .inpaint import TeleaInpainter
from .lift import GridMesh, lift_depth
from .relight import RelightConfig, relight, sample_lighting
from .render import render_novel_view


class NoOverlapError(DensematchError, RuntimeError):
    """No sampled camera pose kept enough covisible pixels."""


@dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes the generated pairs (the defaults follow the published L2M pipeline)."""

    resolution: int = 512  # images are resized (short side) and centre-cropped to resolution x resolution
    pairs_per_image: int = 1
    seed: int = 0
    focal_range: tuple[float, float] = (0.45, 0.75)  # focal length / image width, sampled per image
    poses: PoseRanges = field(default_factory=PoseRanges)
    scene_scale_quantile: float = 0.01  # translations are in units of this quantile of the known depth
    disparity_floor: float = 0.01  # disparity -> depth: 1 / (minmax(disparity) + floor)
    max_slant_deg: float = 86.0  # triangles seen more edge-on than this bridge depth edges: holes
    rel_depth_tol: float = 0.01  # occlusion test of valid0 (bilinear depth lookup)
    footprint_depth_tol: float = 0.05  # occlusion test of valid0 (each footprint pixel)
    min_known_fraction: float = 0.02  # images with less known depth are skipped
    min_valid_fraction: float = 0.05  # a sampled pose must keep at least this fraction of valid0 pixels
    max_pose_tries: int = 10  # poses tried before giving up on a pair
    sky_distance: float = 10.0  # sky is rendered at this multiple of the largest known depth
    relight: RelightConfig | None = field(default_factory=RelightConfig)  # None = no relighting
    inpaint: bool = True  # fill the holes of image1 (the hole mask is kept either way)
    device: str = "cpu"

    def __post_init__(self):
        if self.pairs_per_image < 1:
            raise ValueError(f"pairs_per_image must be at least 1, got {self.pairs_per_image}")
        if not 0 < self.focal_range[0] <= self.focal_range[1]:
            raise ValueError(f"focal_range must satisfy 0 < low <= high, got {self.focal_range}")


@dataclass
class SourceView:
    """A prepared source image with its depth and camera.

    Attributes:
        name: the image's name (file stem); seeds the random draws.
        image: ``(R, R, 3)`` uint8 RGB.
        depth: ``(R, R)`` float32 depth, 0 = unknown (sky included).
        K: ``(3, 3)`` float64 intrinsics.
        sky: ``(R, R)`` bool sky mask, or None.
    """

    name: str
    image: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    sky: np.ndarray | None = None
    _lifted: tuple | None = field(default=None, repr=False, compare=False)  # (key, mesh, edges) cache

    def lifted(self, config: SynthConfig, device: torch.device) -> tuple[GridMesh, torch.Tensor]:
        """The mesh of this view and its depth-edge pixels (computed once per view, device and settings)."""
        key = (str(device), config.max_slant_deg, config.sky_distance)
        if self._lifted is None or self._lifted[0] != key:
            depth = torch.from_numpy(self.depth).to(device)
            K = torch.from_numpy(self.K).to(device=device, dtype=torch.float32)
            backdrop = None
            if self.sky is not None and self.sky.any():
                far = config.sky_distance * float(self.depth.max())
                backdrop = torch.from_numpy(np.where(self.sky, far, 0).astype(np.float32)).to(device)
            mesh = lift_depth(depth, K, max_slant_deg=config.max_slant_deg, backdrop_depth=backdrop)
            height, width = self.depth.shape
            self._lifted = (key, mesh, edge_pixels(mesh.face_stretched, height, width))
        return self._lifted[1], self._lifted[2]


@dataclass
class SynthPair:
    """One generated pair (numpy arrays, ``(H, W)`` = the prepared resolution)."""

    name: str
    index: int
    image0: np.ndarray  # (H, W, 3) uint8
    image1: np.ndarray  # (H, W, 3) uint8, rendered, inpainted, relit
    depth0: np.ndarray  # (H, W) float32, 0 = unknown
    depth1: np.ndarray  # (H, W) float32, 0 = unknown / hole
    valid0: np.ndarray  # (H, W) bool
    hole1: np.ndarray  # (H, W) bool
    K0: np.ndarray  # (3, 3) float64
    K1: np.ndarray
    T_0to1: np.ndarray  # (4, 4) float64
    info: dict = field(default_factory=dict)  # statistics stored with the pair
    shading_depth: np.ndarray | None = None  # (H, W) depth of any surface seen in image1 (for relighting)

    def entry(self) -> dict:
        """The JSON fields of this pair besides the file paths."""
        height, width = self.depth0.shape
        height1, width1 = self.depth1.shape
        return {
            "size0": [width, height],
            "size1": [width1, height1],
            "K0": self.K0.tolist(),
            "K1": self.K1.tolist(),
            "T_0to1": self.T_0to1.tolist(),
            "source": self.name,
            "pair_index": self.index,
            **self.info,
        }


def generator(seed: int, name: str, index: int) -> np.random.Generator:
    """The random generator of pair ``index`` of image ``name`` (``index = -1``: per-image draws)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8")), index + 1])


class SynthEngine:
    """Turns images into :class:`SynthPair` s.

    Args:
        config: the :class:`SynthConfig`.
        depth_source: a callable ``(name, image, crop, rng) -> values`` with a ``kind`` attribute
            (:mod:`densematch.synth.depth`, :class:`~densematch.synth.prior.ProceduralDepth`).
        inpainter: ``(image, hole, seed) -> image``; default
            :class:`~densematch.synth.inpaint.TeleaInpainter`.
        sky: optional ``image -> bool mask`` (:class:`~densematch.synth.sky.SkySegmenter`).
    """

    def __init__(self, config: SynthConfig, depth_source, *, inpainter=None, sky=None):
        self.config = config
        self.depth_source = depth_source
        self.inpainter = inpainter if inpainter is not None else TeleaInpainter()
        self.sky = sky

    # -- one image ------------------------------------------------------------------------------------
    def prepare(self, name: str, image: np.ndarray, K: np.ndarray | None = None) -> SourceView:
        """Resize/crop ``image`` ``(H, W, 3)`` uint8, get its depth, mask the sky, choose ``K``.

        ``K`` (of the original image) is used when given, else intrinsics are sampled.
        """
        config = self.config
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputShapeError(
                f"image '{name}' must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}"
            )
        crop = CropResize.square(image.shape[1], image.shape[0], config.resolution)
        rng = generator(config.seed, name, -1)
        prepared = crop.image(image)
        values = self.depth_source(name, prepared, crop, rng)
        depth = values_to_depth(values, self.depth_source.kind, disparity_floor=config.disparity_floor)
        if depth.shape != prepared.shape[:2]:
            raise InputShapeError(f"depth of '{name}' is {depth.shape}, expected {prepared.shape[:2]}")
        sky = self.sky(prepared) if self.sky is not None else None
        if sky is not None:
            depth = np.where(sky, 0, depth).astype(np.float32)
        known = float((depth > 0).mean())
        if known < config.min_known_fraction:
            raise InputShapeError(f"depth of '{name}' is unknown almost everywhere ({known:.1%} known)")
        if K is None:
            K = sample_intrinsics(rng, config.resolution, config.resolution, config.focal_range)
        else:
            K = crop.intrinsics(K)
        return SourceView(name, prepared, depth, K, sky)

    def pairs_for_image(
        self, name: str, image: np.ndarray, K: np.ndarray | None = None, indices=None
    ) -> list[SynthPair]:
        """All pairs of one image (``indices`` defaults to ``range(pairs_per_image)``)."""
        view = self.prepare(name, image, K)
        indices = range(self.config.pairs_per_image) if indices is None else indices
        return [self.make_pair(view, index) for index in indices]

    def make_pair(self, view: SourceView, index: int) -> SynthPair:
        """Sample a pose with enough overlap and synthesise pair ``index`` of ``view``."""
        config = self.config
        rng = generator(config.seed, view.name, index)
        known = view.depth[view.depth > 0]
        scale = float(np.quantile(known, config.scene_scale_quantile))
        best = None
        for _ in range(config.max_pose_tries):
            T_0to1 = sample_relative_pose(rng, config.poses, scale)
            pair = synthesize_pair(view, T_0to1, view.K, config, rng=rng, inpainter=None, relit=False)
            if best is None or pair.valid0.sum() > best.valid0.sum():
                best = pair
            if pair.valid0.mean() >= config.min_valid_fraction:
                break
        if best.valid0.mean() < config.min_valid_fraction:
            raise NoOverlapError(
                f"no pose out of {config.max_pose_tries} kept {config.min_valid_fraction:.0%} covisible "
                f"pixels for '{view.name}' (best {best.valid0.mean():.1%})"
            )
        finish_pair(best, view, config, rng, self.inpainter if config.inpaint else None, index)
        return best


def synthesize_pair(
    view: SourceView,
    T_0to1: np.ndarray,
    K1: np.ndarray,
    config: SynthConfig,
    *,
    rng: np.random.Generator | None = None,
    inpainter=None,
    relit: bool = True,
    index: int = 0,
) -> SynthPair:
    """Render ``view`` from the camera ``(K1, T_0to1)`` and compute the ground truth (explicit pose).

    With ``inpainter`` / ``relit`` the view is also finished (:func:`finish_pair`); otherwise ``image1`` is
    the plain rendering (0 in uncovered pixels).
    """
    device = torch.device(config.device)
    depth0 = torch.from_numpy(view.depth).to(device)
    K0_t = torch.from_numpy(view.K).to(device=device, dtype=torch.float32)
    K1_t = torch.from_numpy(np.asarray(K1, dtype=np.float64)).to(device=device, dtype=torch.float32)
    T_t = torch.from_numpy(np.asarray(T_0to1, dtype=np.float64)).to(device=device, dtype=torch.float32)
    mesh, edges = view.lifted(config, device)
    image0 = torch.from_numpy(view.image).to(device).permute(2, 0, 1).to(torch.float32) / 255
    height, width = view.depth.shape
    novel = render_novel_view(mesh, image0, K0_t, K1_t, T_t, (width, height))
    valid0, _ = covisible_mask(
        depth0,
        K0_t,
        K1_t,
        T_t,
        novel.depth,
        novel.hole,
        source_uv1=novel.source_uv,
        edge0=edges,
        projected=(novel.vertex_uv, novel.vertex_depth),
        rel_depth_tol=config.rel_depth_tol,
        footprint_depth_tol=config.footprint_depth_tol,
    )
    image1 = (novel.image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    pair = SynthPair(
        name=view.name,
        index=index,
        image0=view.image,
        image1=image1,
        depth0=view.depth,
        depth1=novel.depth.cpu().numpy(),
        valid0=valid0.cpu().numpy(),
        hole1=novel.hole.cpu().numpy(),
        K0=view.K,
        K1=np.asarray(K1, dtype=np.float64),
        T_0to1=np.asarray(T_0to1, dtype=np.float64),
        shading_depth=novel.surface_depth.cpu().numpy(),
    )
    if inpainter is not None or relit:
        finish_pair(
            pair, view, config, rng or generator(config.seed, view.name, index), inpainter, index, relit=relit
        )
    return pair


def finish_pair(
    pair: SynthPair,
    view: SourceView,
    config: SynthConfig,
    rng: np.random.Generator,
    inpainter,
    index: int,
    relit: bool = True,
) -> None:
    """Inpaint the holes and relight ``pair.image1`` in place; fill ``pair.info`` with statistics."""
    pair.index = index
    if inpainter is not None:
        pair.image1 = inpainter(pair.image1, pair.hole1, int(rng.integers(2**31)))
    lighting = None
    if relit and config.relight is not None and rng.random() < config.relight.probability:
        known = view.depth[view.depth > 0]
        lighting = sample_lighting(rng, config.relight, float(np.median(known)))
        device = torch.device(config.device)
        depth = pair.shading_depth if pair.shading_depth is not None else pair.depth1
        shading_depth = torch.from_numpy(depth).to(device)
        image = torch.from_numpy(pair.image1).to(device).permute(2, 0, 1).to(torch.float32) / 255
        K1 = torch.from_numpy(pair.K1).to(device=device, dtype=torch.float32)
        shaded = relight(image, shading_depth, K1, lighting, config.relight.gamma)
        pair.image1 = (shaded * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    pair.info.update(
        {
            "valid_fraction": round(float(pair.valid0.mean()), 5),
            "hole_fraction": round(float(pair.hole1.mean()), 5),
            "inpainted_with": getattr(inpainter, "name", None) if inpainter is not None else None,
            "lighting": lighting.describe() if lighting is not None else None,
        }
    )
