"""Generate the figures the docs show, from full runs, and store them with a manifest each.

Every figure in ``docs/figures/`` comes from one full-mode run (not the ``--fast`` mode the tests
use) of an example script or a CLI command, and sits next to ``<name>.json``: the command, the
settings, the confidences measured in that run, the figure's size and SHA-256, and the foolbench
version and commit. ``tests/test_docs_figures.py`` checks, without recomputing, that every figure
the docs reference is stored and listed, and that each manifest's ``settings`` equal
:func:`settings` now: the example's code (its syntax tree, so comments and formatting do not
count), its arguments, and the defaults of every foolbench function it calls. Change a default or
an example and the test fails until this script is run again.

Usage (one run at a time; the ImageNet figure takes about 6 minutes on a 2-core CPU)::

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python tools/make_docs_figures.py            # stale figures only
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python tools/make_docs_figures.py --only cppn_mnist
    python tools/make_docs_figures.py --check        # list stale figures, exit 1 if any
    python tools/make_docs_figures.py --reference    # rewrite docs/methods/suite_reference.md
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import inspect
import io
import json
import os
import platform
import runpy
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIGURES_DIR = ROOT / "docs" / "figures"
REFERENCE_PAGE = ROOT / "docs" / "methods" / "suite_reference.md"
MAX_BYTES = 300_000


@dataclass(frozen=True)
class Figure:
    """One stored docs figure.

    Attributes:
        name: file stem in ``docs/figures`` (the example's stem, or ``demo``).
        script: example script run in its full mode (None: the ``foolbench`` CLI).
        args: command-line arguments (``--out`` is added).
        uses: dotted names of the foolbench callables it calls; their defaults are part of the settings.
        goal: lowest confidence every image must reach (None: no goal, the figure shows what was reached).
        output: file the run writes, relative to its ``--out`` folder.
    """

    name: str
    script: str | None
    args: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    goal: float | None = 0.9999
    output: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> str:
        prog = f"python {self.script}" if self.script else "foolbench"
        return " ".join([prog, *self.args, "--out", "OUT"])


EVOLUTION = ("foolbench.search.MAPElites", "foolbench.search.MAPElites.run", "foolbench.search.MNIST_RECIPE")
FIGURES: dict[str, Figure] = {
    f.name: f
    for f in [
        Figure(
            "demo",
            None,
            ("demo", "--no-progress"),
            ("foolbench.search.run_evolution", "foolbench.search.MNIST_RECIPE"),
            output="images.png",
        ),
        Figure(
            "fool_your_model",
            "examples/fool_your_model.py",
            uses=(*EVOLUTION, "foolbench.data.mnist_digits", "foolbench.data.train_classifier"),
        ),
        Figure(
            "cppn_mnist",
            "examples/cppn_mnist.py",
            uses=(*EVOLUTION, "foolbench.encodings.CPPNEncoding", "foolbench.models.lenet_mnist"),
        ),
        Figure(
            "ascent_vs_evolution",
            "examples/ascent_vs_evolution.py",
            uses=(*EVOLUTION, "foolbench.search.GradientAscent", "foolbench.search.GradientAscent.run"),
        ),
        Figure(
            "universal_perturbation",
            "examples/universal_perturbation.py",
            uses=("foolbench.search.UniversalPerturbation", "foolbench.data.train_classifier"),
            goal=None,
        ),
        Figure(
            "defenses_compared",
            "examples/defenses_compared.py",
            uses=(
                *EVOLUTION,
                "foolbench.search.PGD",
                "foolbench.defenses.MedianSmoothing",
                "foolbench.defenses.BitDepthReduction",
                "foolbench.defenses.GaussianSmoothing",
                "foolbench.defenses.Ensemble",
            ),
            goal=None,
        ),
        Figure("logistic_regression", "examples/logistic_regression.py", uses=("foolbench.search.FGSM",), goal=None),
        Figure(
            "cppn_imagenet",
            "examples/cppn_imagenet.py",
            ("--minutes", "6"),
            (*EVOLUTION, "foolbench.encodings.CPPNEncoding", "foolbench.models.efficientnet_lite0"),
            goal=None,
        ),
    ]
}


def _resolve(dotted: str) -> Any:
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _defaults(obj: Any) -> Any:
    if not callable(obj) or not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj)):
        return repr(obj)  # a constant such as MNIST_RECIPE
    sig = inspect.signature(obj)
    return {n: repr(p.default) for n, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


def _code_digest(path: Path) -> str:
    """SHA-256 of the script's syntax tree without docstrings: comments and formatting do not count."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                body[0] = ast.Pass()
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def settings(name: str) -> dict[str, Any]:
    """What the run for figure ``name`` would use now (compared with the stored manifest by the tests)."""
    fig = FIGURES[name]
    out: dict[str, Any] = {"command": fig.command, "goal": fig.goal}
    if fig.script is None:
        from foolbench.cli import build_parser

        parsed = vars(build_parser().parse_args([*fig.args, "--out", "OUT"]))
        out["cli"] = {k: repr(v) for k, v in sorted(parsed.items()) if k not in {"func", "flags"}}
    else:
        out["code_sha256"] = _code_digest(ROOT / fig.script)
    out["defaults"] = {dotted: _defaults(_resolve(dotted)) for dotted in fig.uses}
    return out


def _results(env: dict[str, Any]) -> dict[str, Any]:
    """Every FoolingResult / UAP fit / number the example left in its globals, JSON-ready."""
    from foolbench.search import FoolingResult

    found: dict[str, Any] = {}
    for key, value in env.items():
        if isinstance(value, FoolingResult):
            conf = [round(float(c), 6) for c in value.confidence]
            found[key] = {
                "classes": [str(n) for n in value.class_names],
                "confidence": conf,
                "min_confidence": min(conf),
                "evaluations": value.evaluations,
                "seconds": round(value.seconds, 1),
            }
    for key in ("rows", "names", "before", "after"):
        if key in env:
            found[key] = env[key]
    if "rates" in env:
        found["transfer_fooling_rate"] = [[round(float(v), 4) for v in row] for row in env["rates"]]
    return found


def _run(fig: Figure, out: Path) -> dict[str, Any]:
    argv = [*fig.args, "--out", str(out)]
    if fig.script is None:
        from foolbench.cli import main

        status = main(argv)
        if status != 0:
            raise SystemExit(f"foolbench {' '.join(argv)} exited with {status}")
        summary = json.loads((out / "summary.json").read_text())
        results = summary["results"]
        conf = [round(float(r["confidence"]), 6) for r in results["per_class"]]
        keep = {"confidence": conf, "min_confidence": min(conf), "evaluations": results["evaluations"]}
        return {"demo": {**keep, "seconds": round(results["seconds"], 1)}}
    script = str(ROOT / fig.script)
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv, sys.path = [script, *argv], [str(Path(script).parent), *sys.path]
    try:
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            env = runpy.run_path(script, run_name="__main__")
    finally:
        sys.argv, sys.path = old_argv, old_path
    print(printed.getvalue().rstrip(), flush=True)
    return _results(env)


def _shrink(src: Path, dst: Path) -> None:
    """Copy a PNG, re-encoded as small as it goes: optimised, then 256 colours, then smaller."""
    from PIL import Image

    image = Image.open(src).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    if buffer.tell() > MAX_BYTES:
        buffer = io.BytesIO()
        image.quantize(256, dither=Image.Dither.NONE).save(buffer, format="PNG", optimize=True)
    while buffer.tell() > MAX_BYTES:
        image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.quantize(256, dither=Image.Dither.NONE).save(buffer, format="PNG", optimize=True)
    dst.write_bytes(buffer.getvalue())


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def _lowest(measured: dict[str, Any]) -> float | None:
    values = [v["min_confidence"] for v in measured.values() if isinstance(v, dict) and "min_confidence" in v]
    return min(values) if values else None


def make(name: str) -> dict[str, Any]:
    """Run figure ``name``'s full run, store the PNG and its manifest; returns the manifest."""
    import torch

    import foolbench

    fig = FIGURES[name]
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    print(f"[figures] {name}: {fig.command}", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        measured = _run(fig, Path(tmp))
        _shrink(Path(tmp) / (fig.output or f"{name}.png"), FIGURES_DIR / f"{name}.png")
    png = (FIGURES_DIR / f"{name}.png").read_bytes()
    lowest = _lowest(measured)
    manifest = {
        "figure": f"{name}.png",
        "settings": settings(name),
        "measured": measured,
        "lowest_confidence": lowest,
        "goal_reached": None if fig.goal is None else bool(lowest is not None and lowest >= fig.goal),
        "bytes": len(png),
        "sha256": hashlib.sha256(png).hexdigest(),
        "seconds": round(time.perf_counter() - t0, 1),
        "foolbench": foolbench.__version__,
        "commit": _git("rev-parse", "HEAD") + ("+dirty" if _git("status", "--porcelain", "--", "foolbench") else ""),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)",
    }
    path = FIGURES_DIR / f"{name}.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(
        f"[figures] {name}: {len(png) / 1000:.0f} KB, lowest confidence {lowest}, {manifest['seconds']} s", flush=True
    )
    if manifest["goal_reached"] is False:
        print(f"[figures] WARNING {name}: goal {fig.goal} not reached", flush=True)
    return manifest


def stale() -> list[str]:
    """Figures whose PNG or manifest is missing, or whose manifest's settings differ from :func:`settings`."""
    out = []
    for name in FIGURES:
        manifest = FIGURES_DIR / f"{name}.json"
        if (
            not (FIGURES_DIR / f"{name}.png").is_file()
            or not manifest.is_file()
            or json.loads(manifest.read_text(encoding="utf-8"))["settings"] != settings(name)
        ):
            out.append(name)
    return out


def reference_page() -> str:
    """The suite-key reference page, generated from the bench registry."""
    from foolbench.bench import reference_markdown

    note = (
        "<!-- Generated from foolbench.bench.reference_markdown() by tools/make_docs_figures.py "
        "--reference (and by the docs build); do not edit by hand. -->\n\n"
    )
    return note + reference_markdown().rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), help="regenerate these figures")
    parser.add_argument("--all", action="store_true", help="regenerate every figure, stale or not")
    parser.add_argument("--check", action="store_true", help="list stale figures; exit 1 if any")
    parser.add_argument("--reference", action="store_true", help="rewrite the suite-key reference page only")
    args = parser.parse_args(argv)
    if args.reference:
        REFERENCE_PAGE.write_text(reference_page(), encoding="utf-8")
        print(f"[figures] wrote {REFERENCE_PAGE.relative_to(ROOT)}")
        return 0
    todo = stale()
    if args.check:
        print("\n".join(f"stale: {n}" for n in todo) or "all figures fresh")
        return 1 if todo else 0
    names: list[str] = args.only or (list(FIGURES) if args.all else todo)
    run: Callable[[str], Any] = make
    for i, name in enumerate(names, 1):
        print(f"[figures] {i}/{len(names)}", flush=True)
        run(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
