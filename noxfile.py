"""nox sessions: tests, lint, docs, bench."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint"]
TORCH = "torch==2.13.0"


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[test]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the docs with warnings as errors, from the stored figures (no example reruns).

    ``nox -s docs -- figures`` first remakes the stale figures from full runs (minutes; see
    tools/make_docs_figures.py); every step prints a line.
    """
    session.install(TORCH)
    session.install("-e", ".[docs,plots]")
    env = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    if "figures" in session.posargs:
        session.install("-e", ".[docs,plots,imagenet]")
        session.log("remaking stale docs figures from full runs (tools/make_docs_figures.py)")
        session.run("python", "tools/make_docs_figures.py", env=env)
    session.log("building the docs (sphinx-build -W); the stored figures are used as they are")
    session.run("sphinx-build", "-W", "-b", "html", "docs", "docs/_build/html", env=env)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[bench]")
    for script in sorted(__import__("pathlib").Path("benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
