"""Sphinx configuration: ``nox -s docs`` builds it with warnings as errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import foolbench

ROOT = Path(__file__).resolve().parent.parent
project = "foolbench"
author = "foolbench developers"
copyright = "2026, foolbench developers"
release = version = foolbench.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"foolbench {release}"
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = ["Shape"]
nitpicky = False

INVENTORIES = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
}


def _online(host: str = "docs.python.org") -> bool:
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return False
    return True


# Intersphinx links to Python, NumPy and PyTorch when their inventories can be fetched; offline
# builds (CI machines without network) skip them rather than fail on a warning.
intersphinx_mapping = INVENTORIES if os.environ.get("FOOLBENCH_DOCS_OFFLINE") != "1" and _online() else {}

# Figures: the docs show the figures stored in docs/figures/, made once from full runs by
# tools/make_docs_figures.py (each with a JSON manifest: command, settings, confidences, commit), so a
# build never reruns the examples. Only a figure missing from docs/figures/ is made here, by running its
# example in fast mode (small budgets, low confidence): tests/test_docs_figures.py then fails until the
# full-run figure is stored. Every step prints a line, so a long build shows where it is.
FIGURES = Path(__file__).resolve().parent / "figures"
REFERENCE = Path(__file__).resolve().parent / "methods" / "suite_reference.md"


def _say(message: str) -> None:
    print(f"[foolbench docs] {message}", flush=True)


def _tool() -> Any:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_docs_figures
    finally:
        sys.path.pop(0)
    return make_docs_figures


def _suite_reference() -> None:
    text = _tool().reference_page()
    if REFERENCE.is_file() and REFERENCE.read_text(encoding="utf-8") == text:
        _say(f"suite reference: {REFERENCE.relative_to(ROOT)} is current")
    else:
        REFERENCE.write_text(text, encoding="utf-8")
        _say(f"suite reference: regenerated {REFERENCE.relative_to(ROOT)} from foolbench.bench.reference_markdown()")


def _figures(_app: object) -> None:
    _suite_reference()
    scripts = sorted((ROOT / "examples").glob("[!_]*.py"))
    for i, script in enumerate(scripts, 1):
        figure = FIGURES / f"{script.stem}.png"
        step = f"figure {i}/{len(scripts)} {script.stem}"
        if figure.is_file():
            _say(f"{step}: stored full-run figure {figure.relative_to(ROOT)}")
            continue
        if os.environ.get("FOOLBENCH_DOCS_EXAMPLES", "1") == "0":
            _say(f"{step}: missing and FOOLBENCH_DOCS_EXAMPLES=0, not made")
            continue
        _say(
            f"{step}: missing; running {script.relative_to(ROOT)} --fast (a placeholder: store the full run "
            "with tools/make_docs_figures.py)"
        )
        t0 = time.perf_counter()
        FIGURES.mkdir(exist_ok=True)
        subprocess.run([sys.executable, str(script), "--fast", "--out", str(FIGURES)], check=True, capture_output=True)
        _say(f"{step}: done in {time.perf_counter() - t0:.0f} s")
    stale = _tool().stale()
    if not stale:
        _say("figures: every stored figure matches the current code and defaults")
    elif os.environ.get("FOOLBENCH_DOCS_ALLOW_STALE") == "1":
        _say(f"figures: STALE (allowed by FOOLBENCH_DOCS_ALLOW_STALE=1): {', '.join(stale)}")
    else:
        raise RuntimeError(
            f"stale docs figures: {', '.join(stale)}; remake them with `PYTHONPATH=$PWD OMP_NUM_THREADS=1 python "
            f"tools/make_docs_figures.py` (or build with FOOLBENCH_DOCS_ALLOW_STALE=1)"
        )


def setup(app: object) -> None:
    app.connect("builder-inited", _figures)  # type: ignore[attr-defined]
