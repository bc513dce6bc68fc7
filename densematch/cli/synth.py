"""Synthesise training pairs with exact dense ground truth from single images (the L2M data engine).

Every image is resized and centre-cropped to RESOLUTION, lifted to 3D with a depth map and rendered from
random novel cameras. OUT/pairs.json lists the pairs (relative-pose convention of the shared data, plus
depth0, depth1 and valid0 per pair), OUT/previews/<pair>.png a preview sheet per pair (source, rendered
view, valid mask, ground-truth correspondences). Re-running the same command resumes: complete pairs are
kept. An image that cannot be used is skipped with a warning and listed at the end (OUT/failures.json).

example:
  densematch synth shared/data/single_images --output synth/ --pairs-per-image 2
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from . import common

HELP = "synthesise training pairs with dense ground truth from single images (L2M data engine)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", metavar="IMAGES_DIR", help="folder of input images")
    common.add_output(parser)
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
    parser.add_argument("--pairs-per-image", type=common.positive_int, default=1, metavar="N",
                        help="novel views rendered per image (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--resolution", type=common.positive_int, default=512, metavar="R",
                        help="output images are R x R (default: %(default)s)")
    parser.add_argument("--no-relight", action="store_true", help="do not relight the novel views")
    parser.add_argument("--no-inpaint", action="store_true", help="leave holes black (still marked in hole1)")
    parser.add_argument(
        "--inpaint-model",
        metavar="PATH",
        help="diffusers Stable-Diffusion inpainting checkpoint folder (default: OpenCV Telea)",
    )
    parser.add_argument("--sky-model", metavar="PATH", help="skyseg.onnx: sky pixels get unknown depth")
    common.add_device(parser)
    parser.add_argument("--no-preview", action="store_true", help="do not write OUT/previews/*.png")
    parser.add_argument(
        "--workers",
        type=common.positive_int,
        default=1,
        metavar="N",
        help="process images in N parallel processes (CPU rendering; default 1)",
    )
    common.add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from ..synth.depth import FolderDepth, MonocularDepth
    from ..synth.engine import SynthConfig, SynthEngine
    from ..synth.folder import list_images, run_folder
    from ..synth.inpaint import DiffusionInpainter
    from ..synth.popup import PopupDepth
    from ..synth.preview import PREVIEW_FOLDER, write_previews
    from ..synth.prior import ProceduralDepth
    from ..synth.sky import SkySegmenter

    output = common.check_output_folder(args.output)
    for flag, path in (("--depth-model", args.depth_model), ("--inpaint-model", args.inpaint_model),
                       ("--sky-model", args.sky_model)):
        if path is not None and not Path(path).exists():
            raise common.ConfigError(f"{flag}: not found: {path} (local files only)")
    if args.depth not in (None, "popup", "synthetic"):
        common.check_input_folder(args.depth, "--depth")
    device = common.resolve_device(args.device)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    images = list_images(args.images)
    if not images:
        raise common.ConfigError(f"no images found in {args.images}")
    if args.depth_model:
        depth_source = MonocularDepth(args.depth_model, kind=args.depth_kind, device=device)
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
        device=device,
    )
    inpainter = DiffusionInpainter(args.inpaint_model, device=device) if args.inpaint_model else None
    sky = SkySegmenter(args.sky_model) if args.sky_model else None
    engine = SynthEngine(config, depth_source, inpainter=inpainter, sky=sky)
    summary = run_folder(
        engine,
        images,
        output,
        progress=not args.quiet,
        name=output.name,
        workers=args.workers,
    )
    previews = 0 if args.no_preview else write_previews(output, progress=not args.quiet)
    print(f"wrote {summary.written} pairs ({summary.skipped} already present) to {summary.index}"
          + (f", {previews} previews in {output / PREVIEW_FOLDER}" if previews else ""))
    if summary.failures:
        print(
            f"skipped {len(summary.failures)} of {len(images)} images "
            f"(see {output / 'failures.json'}):"
        )
        for image, reason in sorted(summary.failures.items()):
            print(f"  {image}: {reason}")
    return 1 if summary.failures and len(summary.failures) == len(images) else 0
