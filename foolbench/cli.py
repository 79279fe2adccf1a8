"""The ``foolbench`` command line.

Every command writes what it produces under ``--out``. Bad input prints one
line starting with ``foolbench: error:`` and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

import foolbench
from foolbench.errors import FoolbenchError

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors become one line (and exit status 2) in :func:`main`."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _cmd_models(args: argparse.Namespace) -> int:
    from foolbench.models import zoo

    for info in zoo().values():
        shape = "x".join(map(str, info.input_shape))
        extra = f"  [needs foolbench[{info.extra}]]" if info.extra else ""
        print(f"{info.name:<20} {info.dataset:<9} {shape:<10} {info.num_classes:>5} classes  {info.description}{extra}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``foolbench`` command (used by the docs too)."""
    parser = _Parser(
        prog="foolbench",
        description="Find the images deep classifiers get confidently wrong, and measure how defenses hold.",
    )
    parser.add_argument("--version", action="version", version=f"foolbench {foolbench.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("models", help="list the model zoo")
    p.set_defaults(func=_cmd_models)
    from foolbench import _cli_search

    _cli_search.register(sub)
    _cli_search.register_gradient(sub)
    _cli_search.register_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as err:
        print(f"foolbench: error: {err}", file=sys.stderr)
        return 2
    func: Command | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        return func(args)
    except (FoolbenchError, ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"foolbench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("foolbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
