"""Synthesise training pairs with exact dense ground truth from single images (the L2M data engine).

Every image is resized and centre-cropped to RESOLUTION, lifted to 3D with a depth map and rendered from
random novel cameras. OUT/pairs.json lists the pairs (relative-pose convention of the shared data, plus
depth0, depth1 and valid0 per pair). Re-running the same command resumes: complete pairs are kept.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "synthesise training pairs with dense ground truth from single images (L2M data engine)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", metavar="IMAGES_DIR", help="folder of input images")
    parser.add_argument("--output", "-o", required=True, metavar="OUT", help="output folder")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--depth",
        metavar="DIR|popup|synthetic",
        default=None,
        help="folder of per-image maps <stem>.npy / <stem>.png (16-bit); 'popup' for the image-guided "
        "prior (ground plane, vertical segments, far sky; the default) or 'synthetic' for the "
        "procedural piecewise-planar rooms that ignore the image",
    )
    source.add_argument(
        "--depth-model",
        metavar="NAME",
        help="monocular depth model (transformers depth-estimation checkpoint folder, e.g. "
        "Depth-Anything-V2); local weights only",
    )
    parser.add_argument(
        "--depth-kind",
        choices=("depth", "disparity"),
        default="disparity",
        help="how to read --depth maps / --depth-model output (default: relative disparity)",
    )
    parser.add_argument("--pairs-per-image", type=int, default=1, metavar="N")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--resolution", type=int, default=512, metavar="R", help="output images are R x R")
    parser.add_argument("--no-relight", action="store_true", help="do not relight the novel views")
    parser.add_argument("--no-inpaint", action="store_true", help="leave holes black (still marked in hole1)")
    parser.add_argument(
        "--inpaint-model",
        metavar="PATH",
        help="diffusers Stable-Diffusion inpainting checkpoint folder (default: OpenCV Telea)",
    )
    parser.add_argument("--sky-model", metavar="PATH", help="skyseg.onnx: sky pixels get unknown depth")
    parser.add_argument("--device", default="cpu", help="torch device for rendering and models (default cpu)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="process images in N parallel processes (CPU rendering; default 1)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..synth.depth import FolderDepth, MonocularDepth
    from ..synth.engine import SynthConfig, SynthEngine, list_images, run_folder
    from ..synth.inpaint import DiffusionInpainter
    from ..synth.popup import PopupDepth
    from ..synth.prior import ProceduralDepth
    from ..synth.sky import SkySegmenter

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    images = list_images(args.images)
    if not images:
        print(f"no images found in {args.images}")
        return 1
    if args.depth_model:
        depth_source = MonocularDepth(args.depth_model, kind=args.depth_kind, device=args.device)
    elif args.depth in (None, "popup"):
        depth_source = PopupDepth()
    elif args.depth == "synthetic":
        depth_source = ProceduralDepth()
    else:
        depth_source = FolderDepth(args.depth, kind=args.depth_kind)
    config = SynthConfig(
        resolution=args.resolution,
        pairs_per_image=args.pairs_per_image,
        seed=args.seed,
        relight=None if args.no_relight else SynthConfig().relight,
        inpaint=not args.no_inpaint,
        device=args.device,
    )
    inpainter = DiffusionInpainter(args.inpaint_model, device=args.device) if args.inpaint_model else None
    sky = SkySegmenter(args.sky_model) if args.sky_model else None
    engine = SynthEngine(config, depth_source, inpainter=inpainter, sky=sky)
    summary = run_folder(
        engine,
        images,
        args.output,
        progress=not args.quiet,
        name=Path(args.output).name,
        workers=args.workers,
    )
    print(f"wrote {summary.written} pairs ({summary.skipped} already present) to {summary.index}")
    if summary.failures:
        print(
            f"skipped {len(summary.failures)} of {len(images)} images "
            f"(see {Path(args.output) / 'failures.json'}):"
        )
        for image, reason in sorted(summary.failures.items()):
            print(f"  {image}: {reason}")
    return 1 if summary.failures and len(summary.failures) == len(images) else 0
