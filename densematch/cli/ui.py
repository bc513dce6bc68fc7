"""Serve a local web page to match two images with any registered model, or compare several models.

Needs the optional extra: pip install 'densematch[ui]'. The page listens only on --host (default
loopback) and makes no outside requests; models whose weights are not cached are listed with the
reason (start with --allow-downloads to fetch published weights on first use).
"""

from __future__ import annotations

from pathlib import Path

HELP = "local web page: match two images and compare matchers in the browser"


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default: %(default)s; 0.0.0.0 exposes it to your network)")
    parser.add_argument("--port", type=int, default=7860, help="TCP port (default: %(default)s)")
    parser.add_argument("--images", type=Path, action="append", default=[], metavar="DIR",
                        help="folder of images offered as example pairs (pairs.json or name order); repeatable")
    parser.add_argument("--device", default="auto", help="torch device for the models (default: %(default)s)")
    parser.add_argument("--allow-downloads", action="store_true",
                        help="download missing published weights on first use (default: stay offline)")


def run(args) -> int:
    import os

    from ..errors import ConfigError, require
    from ..ui.app import OFFLINE_ENV, UiConfig, launch  # imports Gradio only when the page is built
    from ..ui.library import default_image_dirs

    for key, value in OFFLINE_ENV.items():  # this process serves the page: no telemetry, no hub calls
        os.environ.setdefault(key, value)
    require("gradio", "ui", "densematch ui")  # a clear message before anything else when it is missing

    for folder in args.images:
        if not folder.is_dir():
            raise ConfigError(f"--images {folder}: not a folder")
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    config = UiConfig(host=args.host, port=args.port, device=args.device, allow_downloads=args.allow_downloads,
                      image_dirs=tuple(dict.fromkeys(p.resolve() for p in (*default_image_dirs(), *args.images))))
    print(f"densematch ui: serving on http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    launch(config)
    return 0
