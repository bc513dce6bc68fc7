"""The ``densematch`` command: one subcommand per user task, each a thin layer over the library.

Every subcommand module is import-light (torch, numpy and cv2 are imported inside ``run``), so that
``densematch --help`` answers at once. Problems with the user's input end with a one-line message and a
non-zero exit status; set ``DENSEMATCH_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import DensematchError

# subcommand name -> module in densematch.cli defining HELP, add_arguments(parser) and run(args) -> int
COMMANDS = {
    "models": "densematch.cli.models",
    "match": "densematch.cli.match",
    "benchmark": "densematch.cli.benchmark",
    "synth": "densematch.cli.synth",
    "train": "densematch.cli.train",
    "pairs": "densematch.cli.pairs",
    "match-pairs": "densematch.cli.match_pairs",
    "reconstruct": "densematch.cli.reconstruct",
    "ui": "densematch.cli.ui",
}

DESCRIPTION = "Learned dense image matching (RoMa, Tiny RoMa, L2M++, ...) and the tools around it."
EPILOG = """\
start here:
  densematch models                         what can match, and which weights are here
  densematch match A.jpg B.jpg --model tiny_roma_v1_outdoor --output out/
  densematch COMMAND --help                 every option of a command
"""


def _version() -> str:
    from .. import __version__

    return f"densematch {__version__} (python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densematch", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = os.environ.get("DENSEMATCH_DEBUG", "") not in ("", "0")
    try:
        return int(args._run(args) or 0)
    except DensematchError as exc:
        if debug:
            raise
        print(f"densematch {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permissions, a path that is a folder: the environment, not a bug
        if debug:
            raise
        print(f"densematch {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"densematch {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
