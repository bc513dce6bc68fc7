"""The L2M data engine: lift single images to 3D and synthesise training pairs with exact dense ground truth.

Modules: :mod:`.camera` (preparation, intrinsics, poses), :mod:`.depth` and :mod:`.prior` (depth sources),
:mod:`.lift` (image -> mesh), :mod:`.raster` (z-buffered triangle rasteriser), :mod:`.render` (novel view),
:mod:`.holes` (covisibility, ``valid0``), :mod:`.inpaint`, :mod:`.relight`, :mod:`.sky`, :mod:`.engine`
(the pipeline and folder runs) and :mod:`.store` (the on-disk format).
"""

from .camera import CropResize, PoseRanges, sample_intrinsics, sample_relative_pose
from .depth import FolderDepth, MonocularDepth, read_depth_file, values_to_depth
from .engine import SourceView, SynthConfig, SynthEngine, SynthPair, synthesize_pair
from .folder import run_folder
from .holes import covisible_mask
from .inpaint import DiffusionInpainter, TeleaInpainter
from .lift import GridMesh, lift_depth
from .prior import ProceduralDepth, procedural_depth
from .raster import Fragments, rasterize
from .relight import RelightConfig, relight
from .render import NovelView, render_novel_view
from .sky import SkySegmenter

__all__ = [
    "CropResize",
    "DiffusionInpainter",
    "FolderDepth",
    "Fragments",
    "GridMesh",
    "MonocularDepth",
    "NovelView",
    "PoseRanges",
    "ProceduralDepth",
    "RelightConfig",
    "SkySegmenter",
    "SourceView",
    "SynthConfig",
    "SynthEngine",
    "SynthPair",
    "TeleaInpainter",
    "covisible_mask",
    "lift_depth",
    "procedural_depth",
    "rasterize",
    "read_depth_file",
    "relight",
    "render_novel_view",
    "run_folder",
    "sample_intrinsics",
    "sample_relative_pose",
    "synthesize_pair",
    "values_to_depth",
]
