"""One command line for both engines: ``python -m iterconv <command> ...``.

Each package registers its own subcommands through a ``register(subparsers)`` function;
a handler takes the parsed namespace and returns an exit status. Expected failures raise
:class:`UserError` and are reported as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute subcommands, in the order they appear in ``--help``.
COMMAND_MODULES = (
    "iterconv.data.cli",
    "iterconv.train.cli",
    "iterconv.analysis.cli",
    "iterconv.figures.cli",
    "iterconv.report.cli",
    "iterconv.pipeline.cli",
)


class UserError(Exception):
    """An error caused by input (paths, parameters, files): reported as one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iterconv", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # a real import error inside the module
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as err:
        print(f"iterconv {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"iterconv {args.command}: interrupted", file=sys.stderr)
        return 130
