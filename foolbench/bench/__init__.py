"""The scorecard: run methods x defenses x models from a small TOML suite and report what held.

:func:`run_suite` runs every cell of a suite (a built-in one, ``"quick"`` or ``"paper"``,
or your TOML file), resumes interrupted suites, and writes ``results.json``,
``report.md``, image grids and plots. ``foolbench bench`` is its command line.
"""

from __future__ import annotations

from foolbench.bench import factories
from foolbench.bench._config import BUILTIN_SUITES, DEFENSES, METHODS, Spec, SuiteConfig, load_config, parse_config
from foolbench.bench._suite import SCHEMA, run_suite

__all__ = [
    "BUILTIN_SUITES",
    "DEFENSES",
    "METHODS",
    "SCHEMA",
    "Spec",
    "SuiteConfig",
    "factories",
    "load_config",
    "parse_config",
    "run_suite",
]
