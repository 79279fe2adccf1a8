"""The parser, the options every command shares, and the one-line error handling of :func:`main`."""

from __future__ import annotations

import argparse
import errno
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import torch

import foolbench
from foolbench import _checks
from foolbench.errors import FoolbenchError

Command = Callable[[argparse.Namespace], int]

DEFAULT_THREADS = 1
THREADS_HELP = (
    "torch intra-op CPU threads (0: torch's default, one per core). 1 suits the small MNIST models: "
    "more threads add overhead and slow down on a shared or loaded machine; raise it for ImageNet models"
)


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors become one line (and exit status 2) in :func:`main`."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default (flags defaulting to None say what that means in their help)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        silent = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if silent or not action.option_strings or "%(default)" in text:
            return text
        return text + " (default: %(default)s)"


def _checked(check: Callable[[str, Any], Any], name: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` that converts the text, then runs a foolbench check on it (one-line errors)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an int, got {text!r}") from None
        try:
            check(name, value)
        except FoolbenchError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value

    return parse


def _device(text: str) -> str:
    try:
        _checks.torch_device("device", text)
    except FoolbenchError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def add_command(
    sub: argparse._SubParsersAction[Any], name: str, func: Command, *, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A sub-command parser with ``--threads``; ``func(args)`` runs it."""
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=description or help, formatter_class=_Formatter
    )
    p.add_argument(
        "--threads",
        type=_checked(_checks.nonnegative_int, "threads", int),
        default=DEFAULT_THREADS,
        metavar="N",
        help=THREADS_HELP,
    )
    p.set_defaults(func=func)
    return p


def add_run_options(
    p: argparse.ArgumentParser,
    *,
    out: str,
    seed: bool = True,
    progress: bool = True,
    out_help: str = "output folder (created; locked while the command writes to it)",
) -> None:
    """``--out``, ``--device``, ``--seed`` and ``--no-progress``, the options of every computing command."""
    p.add_argument("--out", default=out, help=out_help)
    p.add_argument("--device", type=_device, default=None, help="torch device: cpu, cuda or cuda:N (default: the CPU)")
    if seed:
        p.add_argument(
            "--seed", type=_checked(_checks.seed_int, "seed", int), default=0, help="random seed, in [0, 2**64)"
        )
    if progress:
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """``--model`` and ``--image-size``."""
    p.add_argument("--model", default="lenet-mnist", help="zoo model name; see `foolbench models`")
    p.add_argument(
        "--image-size", type=int, default=None, help="raw image side for ImageNet models (default: the model's)"
    )


def classes(text: str) -> list[str]:
    """``--classes``: comma-separated class indices or names; the library resolves them."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"--classes must name at least one class index or name, got {text!r}")
    return items


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``foolbench`` command (used by the docs too)."""
    from foolbench.cli import _commands

    parser = _Parser(
        prog="foolbench",
        description="Find the images deep classifiers get confidently wrong, and measure how defenses hold.",
        epilog=(
            f"Every command takes --threads N, default {DEFAULT_THREADS}: {THREADS_HELP}.\n"
            "Run `foolbench COMMAND --help` for a command's options and their defaults."
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"foolbench {foolbench.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _commands.register(sub)
    return parser


def finish(p: argparse.ArgumentParser, *, aliases: dict[str, str] | None = None) -> None:
    """Record each option's flag, so that errors from the library name ``--max-evaluations``, not ``max_evaluations``.

    ``aliases``: library argument names that a command passes under another option's name
    (``{"num_cpus": "ray_cpus"}``: ``RayExecutor``'s ``num_cpus`` is ``--ray-cpus``).
    """
    flags = {a.dest: a.option_strings[-1] for a in p._actions if a.option_strings and a.dest != "help"}
    flags.update({name: flags[dest] for name, dest in (aliases or {}).items()})
    p.set_defaults(flags=flags)


def _flag_names(args: argparse.Namespace) -> dict[str, str]:
    return dict(getattr(args, "flags", {}))


def _one_line(message: str, flags: dict[str, str], switches: frozenset[str] = frozenset()) -> str:
    """Collapse a message to one line and name a library argument by its command-line flag.

    ``switches``: the options that are on/off flags (``--fresh``); their ``name=True`` becomes the flag.
    A name is rewritten at the start and after a space or "(" only: never inside a path or a quoted value.
    """
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    for dest in sorted(flags, key=len, reverse=True):
        if text.startswith((dest + " ", dest + "[")):
            text = flags[dest] + text[len(dest) :]
        # "fresh=True" -> "--fresh", "max_evaluations=5,000" -> "--max-evaluations 5,000"
        at = rf"(?:(?<=[\s(])|^){re.escape(dest)}="
        if dest in switches:
            text = re.sub(at + r"True\b", flags[dest], text)
        else:
            text = re.sub(at, flags[dest] + " ", text)
    return text


def _memory_message(err: BaseException, args: argparse.Namespace) -> str | None:
    text = str(err)
    if not (isinstance(err, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower()):
        return None
    batch = getattr(args, "batch_size", None)
    hint = f"; lower --batch-size (got {batch})" if batch is not None else ""
    return f"out of memory{hint}"


def _os_message(err: OSError) -> str:
    if not err.filename:
        return str(err)
    what = {errno.ENOSPC: "no space left on the device", errno.EROFS: "the file system is read-only"}.get(
        err.errno or 0, err.strerror or type(err).__name__
    )
    return f"{what}: {err.filename!s}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 done, 1 a suite finished with failed cells, 2 bad input
    or failure, 130 interrupted).

    Every failure the user can fix prints exactly one line, ``foolbench: error: ...``, on stderr.
    """
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
    foolbench.tune_malloc()  # this process is ours: keep freed tensor memory instead of page-faulting it back
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(func, args)
    finally:
        torch.set_num_threads(threads)  # an in-process caller (a test, a notebook) gets its setting back


def _run(func: Command, args: argparse.Namespace) -> int:
    """Run one command; a failure the user can fix becomes one line on stderr and status 2."""
    flags = _flag_names(args)
    switches = frozenset(k for k in flags if isinstance(getattr(args, k, None), bool))
    try:
        return func(args)
    except (FoolbenchError, ValueError, TypeError, ImportError) as err:
        message = _one_line(str(err), flags, switches)
    except KeyboardInterrupt:
        print("foolbench: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        message = _one_line(_os_message(err), {})
    except (MemoryError, RuntimeError) as err:
        memory = _memory_message(err, args)
        if memory is None:
            raise
        message = memory
    print(f"foolbench: error: {message}", file=sys.stderr)
    return 2
