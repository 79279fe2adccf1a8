"""The docs show stored full-run figures, and those figures are fresh (checked without recomputing).

Rule: every image a docs page references exists; every one under ``docs/figures/`` (or ``docs/figures/gpu/``, figures of runs on a lent GPU, and ``docs/figures/cpu/``, plots of long CPU benchmark runs, whose manifests name the run instead of settings) has a manifest
``<name>.json`` beside it that lists it (file name, byte count, SHA-256), and the manifest's
``settings`` equal what ``tools/make_docs_figures.py`` would use now (the example's syntax tree, its
arguments, the CLI's parsed defaults and the defaults of every foolbench callable it uses). A changed
default or example fails here until the figure is regenerated.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FIGURES = DOCS / "figures"
GPU_FIGURES = FIGURES / "gpu"  # measured on a lent GPU: not regenerable here, so their manifests name the run
CPU_FIGURES = FIGURES / "cpu"  # plots of long CPU benchmark runs kept in benchmarks/results/: manifests name the run
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_docs_figures", ROOT / "tools" / "make_docs_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_docs_figures", module)
    spec.loader.exec_module(module)
    return module


TOOL = _tool()


def _referenced() -> list[tuple[Path, Path]]:
    """(page, image) for every Markdown image on every docs page."""
    pages = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
    return [(page, (page.parent / ref).resolve()) for page in pages for ref in IMAGE.findall(page.read_text())]


def _manifest(name: str, folder: Path = FIGURES) -> dict[str, object]:
    path = folder / f"{name}.json"
    assert path.is_file(), f"{path.relative_to(ROOT)} missing: run tools/make_docs_figures.py --only {name}"
    data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_every_referenced_image_exists_and_is_a_stored_figure() -> None:
    refs = _referenced()
    assert refs, "the docs reference no image at all"
    for page, image in refs:
        where = f"{page.relative_to(ROOT)} -> {image}"
        assert image.is_file(), f"missing image: {where}"
        assert image.parent in (FIGURES, GPU_FIGURES, CPU_FIGURES), (
            f"docs images live in docs/figures/ (with a manifest): {where}"
        )
        manifest = _manifest(image.stem, image.parent)
        assert manifest["figure"] == image.name, where
        data = image.read_bytes()
        assert manifest["bytes"] == len(data), f"{where}: the PNG is not the one its manifest describes"
        assert manifest["sha256"] == hashlib.sha256(data).hexdigest(), f"{where}: PNG changed since its manifest"


def test_every_gallery_example_and_figure_is_shown() -> None:
    shown = {image.stem for _, image in _referenced()}
    assert set(TOOL.FIGURES) <= shown, f"stored but not shown: {sorted(set(TOOL.FIGURES) - shown)}"
    examples = {p.stem for p in (ROOT / "examples").glob("[!_]*.py")}
    assert examples <= set(TOOL.FIGURES), f"examples without a stored figure: {sorted(examples - set(TOOL.FIGURES))}"


@pytest.mark.parametrize("name", sorted(TOOL.FIGURES))
def test_figure_is_fresh(name: str) -> None:
    manifest = _manifest(name)
    assert manifest["settings"] == TOOL.settings(name), (
        f"docs/figures/{name}.png was made with other settings than the current code would use: "
        f"run PYTHONPATH=$PWD OMP_NUM_THREADS=1 python tools/make_docs_figures.py --only {name}"
    )


@pytest.mark.parametrize("name", sorted(TOOL.FIGURES))
def test_figure_is_small_and_reached_its_goal(name: str) -> None:
    manifest = _manifest(name)
    assert (FIGURES / f"{name}.png").stat().st_size <= TOOL.MAX_BYTES
    assert manifest["goal_reached"] is not False, f"{name}: the stored run did not reach its goal"
    assert manifest["foolbench"] and manifest["commit"], manifest


def test_stale_is_computed_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest whose settings differ (say, an old default) is reported stale; a missing one too."""
    name = "logistic_regression"
    (tmp_path / f"{name}.png").write_bytes((FIGURES / f"{name}.png").read_bytes())
    old = dict(_manifest(name))
    old["settings"] = {**TOOL.settings(name), "defaults": {"foolbench.search.FGSM": {"eps": "0.1"}}}
    (tmp_path / f"{name}.json").write_text(json.dumps(old))
    monkeypatch.setattr(TOOL, "FIGURES_DIR", tmp_path)
    assert set(TOOL.stale()) == set(TOOL.FIGURES)
    old["settings"] = TOOL.settings(name)
    (tmp_path / f"{name}.json").write_text(json.dumps(old))
    assert name not in TOOL.stale()


def test_settings_follow_the_code_not_its_formatting(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('"""Doc."""\nx = f(1)  # note\n')
    b.write_text('"""Other doc."""\n\nx = f( 1 )\n')
    c.write_text('"""Doc."""\nx = f(2)\n')
    assert TOOL._code_digest(a) == TOOL._code_digest(b) != TOOL._code_digest(c)


def test_suite_reference_page_is_current() -> None:
    page = DOCS / "methods" / "suite_reference.md"
    assert page.read_text(encoding="utf-8") == TOOL.reference_page(), (
        "docs/methods/suite_reference.md is stale: run python tools/make_docs_figures.py --reference"
    )


def test_docs_build_uses_stored_figures_and_prints_each_step(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The build hook in docs/conf.py runs no example when the figures are stored, and says so per step."""
    import subprocess

    monkeypatch.setenv("FOOLBENCH_DOCS_OFFLINE", "1")
    spec = importlib.util.spec_from_file_location("foolbench_docs_conf", DOCS / "conf.py")
    assert spec is not None and spec.loader is not None
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)

    def no_run(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the docs build ran {args}")

    monkeypatch.setattr(subprocess, "run", no_run)
    monkeypatch.setattr(conf, "REFERENCE", DOCS / "methods" / "suite_reference.md")  # unchanged: not rewritten
    conf._figures(None)
    lines = capsys.readouterr().out.splitlines()
    examples = sorted(p.stem for p in (ROOT / "examples").glob("[!_]*.py"))
    for i, stem in enumerate(examples, 1):
        assert (
            f"[foolbench docs] figure {i}/{len(examples)} {stem}: stored full-run figure docs/figures/{stem}.png"
            in lines
        )
    assert "[foolbench docs] figures: every stored figure matches the current code and defaults" in lines


def test_a_changed_default_makes_figures_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    import foolbench as fb

    assert TOOL.stale() == []
    monkeypatch.setattr(
        fb.search, "MNIST_RECIPE", fb.search.EvolutionRecipe(batch_size=32, mutation_rate=0.02, eta=1.0)
    )
    assert {"demo", "fool_your_model", "ascent_vs_evolution", "cppn_mnist"} <= set(TOOL.stale())
    monkeypatch.undo()
    original = fb.search.MAPElites.__init__
    monkeypatch.setattr(original, "__kwdefaults__", {**original.__kwdefaults__, "parents": "uniform"})
    assert "cppn_imagenet" in TOOL.stale()


def test_gpu_figures_name_the_run_behind_them() -> None:
    """A figure from a GPU run names its results file (kept in the repository) and the card it ran on."""
    pngs = sorted(GPU_FIGURES.glob("*.png"))
    assert pngs, "docs/figures/gpu/ holds no figure"
    for png in pngs:
        manifest = _manifest(png.stem, GPU_FIGURES)
        source = ROOT / str(manifest["source"])
        assert source.is_file(), f"{png.name}: its results file {manifest['source']} is missing"
        results = json.loads(source.read_text(encoding="utf-8"))
        assert results["device"] == manifest["device"] and "cpu" not in str(manifest["device"]).lower(), png.name


def test_cpu_figures_name_the_run_behind_them_and_are_shown() -> None:
    """A plot of a long CPU benchmark names its results file (kept in the repository) and a CPU machine,
    and a docs page shows it (like every stored run figure)."""
    pngs = sorted(CPU_FIGURES.glob("*.png"))
    assert pngs, "docs/figures/cpu/ holds no figure"
    shown = {image for _, image in _referenced()}
    for png in [*pngs, *GPU_FIGURES.glob("*.png")]:
        assert png.resolve() in shown, f"{png.relative_to(ROOT)} is stored but no docs page shows it"
    for png in pngs:
        manifest = _manifest(png.stem, CPU_FIGURES)
        source = ROOT / str(manifest["source"])
        assert source.is_file(), f"{png.name}: its results file {manifest['source']} is missing"
        assert "cpu" in str(manifest["device"]).lower() and manifest["command"], png.name
        assert manifest["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest(), (
            f"{png.name} was drawn from another version of {manifest['source']}: rerun the tool its manifest names"
        )
