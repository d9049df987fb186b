"""The ``grounded`` command line.

Each subcommand lives in its own module of this package, exposing ``register(subparsers)`` which adds its
parser and sets ``func(args) -> int``. The CLI only parses arguments and calls the Python API.

Errors: a :class:`grounded.errors.GroundedError` (bad image, prompt, option, missing model) is printed as one
line ``grounded: error: ...`` and exits with status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from grounded.errors import GroundedError

# Subcommand modules, in the order ``grounded --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "segment",
    "label",
    "export",
    "review_queue",
    "train",
    "evaluate",
    "predict",
    "distill",
    "train_adapter",
    "track",
    "serve",
    "mcp",
    "doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grounded",
        description="Open-vocabulary grounded segmentation: name things, get their masks.",
        epilog='Example: grounded segment photo.jpg "a wheel" --out out/',
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"grounded.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except GroundedError as exc:
        print(f"grounded: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grounded: interrupted; finished work is kept on disk", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
