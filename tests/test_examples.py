"""Every example runs in its fast mode and saves its figure, so none of them rots; each runs when copied alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def test_every_example_is_listed() -> None:
    assert {p.stem for p in SCRIPTS} == {
        "fool_your_model",
        "cppn_imagenet",
        "cppn_mnist",
        "ascent_vs_evolution",
        "universal_perturbation",
        "defenses_compared",
        "logistic_regression",
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_runs_and_saves_its_figure(script: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(script), "--fast", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    figure = tmp_path / f"{script.stem}.png"
    assert figure.is_file() and figure.stat().st_size > 1000


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_imports_only_public_names(script: Path) -> None:
    """A copied example runs on its own: no helper modules beside it, no private foolbench modules."""
    import ast

    tree = ast.parse(script.read_text(encoding="utf-8"))
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert all(
        m.split(".")[0] in {"__future__", "argparse", "pathlib", "torch", "foolbench", "matplotlib"} for m in modules
    ), modules
    assert not any(part.startswith("_") for m in modules for part in m.split(".") if part != "__future__"), modules
