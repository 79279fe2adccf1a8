"""The scorecard: run methods x defenses x models from a small TOML suite and report what held.

:func:`run_suite` runs every cell of a suite (a built-in one, ``"quick"``, ``"paper"`` or
``"paper-imagenet"``, or your TOML file), resumes interrupted suites, and writes ``results.json``,
``report.md``, image grids and plots. ``foolbench bench`` is its command line.

Each method kind and defense kind is one class (:class:`Method`, :class:`Defense`) with a
validated parameter dataclass (:class:`Params`), registered by name with
:func:`register_method` / :func:`register_defense`; a suite's ``kind = "..."`` finds it. Cells
run as :class:`CellTask` objects through an :class:`Executor` (default :class:`LocalExecutor`).

A method with ``runs = N`` (``map-elites``) becomes N cells at parse time (``name#run1`` ...
``name#runN``, each seeded from its own name), so any executor runs them in parallel; the report
measures the diversity of their elites per class (``results.json["diversity"]``).

Trust model: a suite file is code. A file that names ``factory = "module:function"`` or
``[data] dataset = "module:function"`` imports and runs that code, like a Python script; run
only suite files you trust.
"""

from __future__ import annotations

from foolbench.bench import factories
from foolbench.bench._config import BUILTIN_SUITES, Spec, SuiteConfig, load_config, parse_config
from foolbench.bench._executor import CellResult, CellTask, Executor, LocalExecutor
from foolbench.bench._params import Params, param
from foolbench.bench._reference import json_schema, reference_markdown
from foolbench.bench._registry import (
    DEFENSES,
    METHODS,
    CellOutput,
    Context,
    Defense,
    Method,
    Model,
    Target,
    register_defense,
    register_method,
    unregister,
)
from foolbench.bench._report import CLAIMS, Claim
from foolbench.bench._suite import SCHEMA, run_suite

__all__ = [
    "BUILTIN_SUITES",
    "CLAIMS",
    "DEFENSES",
    "METHODS",
    "SCHEMA",
    "CellOutput",
    "CellResult",
    "CellTask",
    "Claim",
    "Context",
    "Defense",
    "Executor",
    "LocalExecutor",
    "Method",
    "Model",
    "Params",
    "Spec",
    "SuiteConfig",
    "Target",
    "factories",
    "json_schema",
    "load_config",
    "param",
    "parse_config",
    "reference_markdown",
    "register_defense",
    "register_method",
    "run_suite",
    "unregister",
]
