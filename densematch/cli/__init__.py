"""The ``densematch`` command: one subcommand per user task, each a thin layer over the library."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import DensematchError

# subcommand name -> module in densematch.cli defining add_arguments(parser) and run(args) -> int
COMMANDS = {
    "match": "densematch.cli.match",
    "benchmark": "densematch.cli.benchmark",
    "synth": "densematch.cli.synth",
    "train": "densematch.cli.train",
    "pairs": "densematch.cli.pairs",
    "match-pairs": "densematch.cli.match_pairs",
    "reconstruct": "densematch.cli.reconstruct",
    "ui": "densematch.cli.ui",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densematch", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except DensematchError as exc:
        print(f"densematch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"densematch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
