"""One command line for both engines: ``python -m iterconv <command> ...``.

Each package registers its own subcommands through a ``register(subparsers)`` function;
a handler takes the parsed namespace and returns an exit status. Expected failures raise
:class:`UserError` and are reported as one line on stderr, never as a traceback; so are
operating-system errors a handler did not anticipate (a path that does not exist or cannot be
written, a full disk or quota). Both exit with status 2 (``ITERCONV_TRACEBACK=1`` shows the
traceback of the latter). Only programming errors print a traceback (status 1).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from iterconv.errors import UserError  # re-exported: the command modules raise it

# Modules that contribute subcommands, in the order they appear in ``--help``.
COMMAND_MODULES = (
    "iterconv.data.cli",
    "iterconv.train.cli",
    "iterconv.analysis.cli",
    "iterconv.analysis.model_cli",
    "iterconv.figures.cli",
    "iterconv.report.cli",
    "iterconv.pipeline.cli",
    "iterconv.pipeline.gc",
    "iterconv.pipeline.status",
    "iterconv.families.cli",
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors (a missing option, a value of the wrong type) are one
    line, ``iterconv <command>: error: ...``, with status 2 like every other bad input; the
    usage is in ``--help``. Subcommands' parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


class Subcommands(argparse._SubParsersAction):
    """The subcommands' action: a subcommand registered with only a one-line ``help`` shows it
    as the description of its own ``--help`` too."""

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        kwargs.setdefault("description", kwargs.get("help"))
        return super().add_parser(name, **kwargs)


def one_line(text: str) -> str:
    """``text`` with every run of whitespace, line breaks included, as one space."""
    return " ".join(text.split())


DESCRIPTION = (
    "The commands behind the iterconv workflow: prepare datasets, train runs, compute the "
    "iterative convergence indices, collect tables, check the claims, draw figures, and follow "
    "a preset's grid. Snakemake runs them for you (snakemake --cores all); each can also be "
    "run by hand."
)
EPILOG = "Run 'iterconv COMMAND --help' for what a command does and its options."


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="iterconv", description=DESCRIPTION, epilog=EPILOG)
    parser.register("action", "parsers", Subcommands)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
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
        print(f"iterconv {args.command}: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # environment, not a bug: wrong path, permissions, disk full
        if os.environ.get("ITERCONV_TRACEBACK"):
            raise
        message = one_line(describe_os_error(err))
        print(f"iterconv {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"iterconv {args.command}: interrupted", file=sys.stderr)
        return 130


def describe_os_error(err: OSError) -> str:
    """One line for an OSError: what failed and on which path."""
    what = err.strerror or str(err) or type(err).__name__
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    return f"{what}: {' -> '.join(paths)}" if paths else what
