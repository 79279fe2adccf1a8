"""Sphinx configuration: ``nox -s docs`` builds it with warnings as errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

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

# The gallery: every example runs in its fast mode at build time and its figure is shown with its code.
GALLERY = Path(__file__).resolve().parent / "gallery_images"


def _run_examples(_app: object) -> None:
    if os.environ.get("FOOLBENCH_DOCS_EXAMPLES", "1") == "0":
        return
    GALLERY.mkdir(exist_ok=True)
    for script in sorted((ROOT / "examples").glob("[!_]*.py")):
        if (GALLERY / f"{script.stem}.png").is_file():
            continue
        subprocess.run([sys.executable, str(script), "--fast", "--out", str(GALLERY)], check=True, capture_output=True)


def setup(app: object) -> None:
    app.connect("builder-inited", _run_examples)  # type: ignore[attr-defined]
