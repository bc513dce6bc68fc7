"""Train a registered model on synthetic, homography, MegaDepth or ScanNet pairs.

Writes OUTPUT/last.pth (load it with densematch.load(MODEL, weights=...) or --weights), OUTPUT/checkpoint.pth
(for --resume), OUTPUT/config.json (every effective setting), OUTPUT/metrics.jsonl and OUTPUT/loss_curve.png.
--steps 0 writes the initial model.
Several GPUs: torchrun --nproc_per_node=N -m densematch train ... (--batch-size is the global batch).
"""

from __future__ import annotations

import argparse

from . import common

HELP = "train a model (published losses and recipes; checkpoints, resume, multi-GPU via torchrun)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("positional_model", nargs="?", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--model", metavar="NAME",
                        help="registered model, e.g. tiny_roma_v1_outdoor or roma_outdoor (see `densematch models`)")
    parser.add_argument("--matcher", dest="model", help=argparse.SUPPRESS)
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="[KIND:]DIR",
        help="training data; repeat to alternate batches between sources. KIND (optional): "
        "megadepth, scannet, synthetic, synthetic-live, homography (default: detected)",
    )
    parser.add_argument(
        "--steps", type=int, required=True, help="optimiser steps (0 writes the initial model)"
    )
    common.add_output(parser)
    parser.add_argument("--batch-size", type=common.positive_int, default=8,
                        help="global batch size (pairs per step)")
    parser.add_argument(
        "--resolution",
        default=None,
        help="training size, 'S' or 'HxW' (default: the model's published training size)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate of the main parameters (default: published rate x batch / 8)",
    )
    parser.add_argument(
        "--lr-backbone",
        type=float,
        default=None,
        help="learning rate of the CNN backbone (RoMa's VGG; default: published ratio to --lr)",
    )
    parser.add_argument("--preset", help="a named variant of the model's recipe (e.g. s2ld: train, test)")
    parser.add_argument("--weight-decay", type=float, help="AdamW weight decay (default: the recipe's)")
    parser.add_argument("--grad-clip", type=float, help="max gradient norm (default: the recipe's)")
    parser.add_argument("--warmup-steps", type=int, help="linear lr warm-up steps (default: the recipe's)")
    parser.add_argument("--lr-milestones", help="comma-separated fractions of --steps at which the lr drops "
                        "(default: the recipe's)")
    parser.add_argument("--lr-gamma", type=float, help="lr factor at each milestone (default: the recipe's)")
    parser.add_argument(
        "--amp",
        choices=("auto", "off", "fp16", "bf16"),
        default="auto",
        help="mixed precision (auto: fp16 on CUDA, off on CPU)",
    )
    parser.add_argument(
        "--dinov2-weights",
        help="RoMa models: local DINOv2 checkpoint (default: the published file, downloaded once)",
    )
    parser.add_argument(
        "--init",
        default=None,
        metavar="WEIGHTS",
        help="start from a weights file (flat state dict) or 'published' (the published "
        "weights) instead of a random initialisation",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --output from its checkpoint"
    )
    parser.add_argument("--seed", type=int, default=0)
    common.add_device(parser)
    parser.add_argument("--workers", type=int, default=2, help="data-loading processes per training process")
    parser.add_argument("--log-every", type=common.positive_int, default=10, help="steps between metrics lines")
    parser.add_argument("--checkpoint-every", type=common.positive_int, default=500,
                        help="steps between checkpoints")
    common.add_quiet(parser, "progress bar")
    parser.add_argument("--strict", action="store_true",
                        help="stop at an unreadable image or map (default: skip the pair with a warning, count it)")


def run(args: argparse.Namespace) -> int:
    from ..data.transforms import parse_resolution
    from ..train import TrainConfig, train
    from ..train.config import TrainConfigError

    if args.model and args.positional_model and args.model != args.positional_model:
        raise common.ConfigError(f"two models given: {args.positional_model} and --model {args.model}")
    args.model = args.model or args.positional_model
    model = common.require_model(args)
    if args.steps < 0:
        raise common.ConfigError(f"--steps must be 0 or positive, got {args.steps}")
    if args.workers < 0:
        raise common.ConfigError(f"--workers must be 0 or positive, got {args.workers}")
    common.check_output_folder(args.output)
    device = None if args.device == "auto" else common.resolve_device(args.device)  # auto: per process (DDP)
    try:
        resolution = parse_resolution(args.resolution) if args.resolution else None
    except ValueError as exc:
        raise TrainConfigError(f"bad --resolution '{args.resolution}': {exc}") from None
    try:
        milestones = (tuple(float(v) for v in args.lr_milestones.split(",")) if args.lr_milestones else None)
    except ValueError:
        raise TrainConfigError(f"bad --lr-milestones '{args.lr_milestones}': expected fractions like 0.5,0.75") \
            from None
    config = TrainConfig(
        model=model,
        data=tuple(args.data),
        output=str(args.output),
        steps=args.steps,
        batch_size=args.batch_size,
        resolution=resolution,
        lr=args.lr,
        lr_backbone=args.lr_backbone,
        preset=args.preset,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        warmup_steps=args.warmup_steps,
        lr_milestones=milestones,
        lr_gamma=args.lr_gamma,
        amp=args.amp,
        seed=args.seed,
        init=args.init,
        dinov2_weights=args.dinov2_weights,
        num_workers=args.workers,
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
        progress=not args.quiet,
        strict=args.strict,
    )
    result = train(config, resume=args.resume, device=device)
    loss = "" if result.last_loss is None else f", last loss {result.last_loss:.4g}"
    print(f"step {result.step}{loss}: wrote {result.weights} and {result.checkpoint}")
    if result.skipped:
        print(f"skipped {result.skipped} unreadable training pair(s) (warnings above; --strict stops at the first)")
    return 0
