"""The ``foolbench`` command line.

Each command is one small function that parses its options and calls one library function
(:func:`foolbench.search.run_evolution`, :func:`~foolbench.search.run_ascent`,
:func:`~foolbench.search.run_uap`, :func:`foolbench.bench.run_suite`). Every command writes what it
produces under ``--out`` and takes ``--threads``. Bad input prints one line starting with
``foolbench: error:`` and exits with status 2, never a traceback.
"""

from __future__ import annotations

from foolbench.cli._main import DEFAULT_THREADS, build_parser, main

__all__ = ["DEFAULT_THREADS", "build_parser", "main"]
