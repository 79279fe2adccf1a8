"""The paper-imagenet suite, the evolution report additions and the random-image baseline."""

from __future__ import annotations

import builtins
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch

from foolbench.bench import BUILTIN_SUITES, load_config, parse_config, run_suite
from foolbench.bench._report import IMAGENET_GROUPS, imagenet_group, markdown, super_categories_section

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_paper_imagenet_is_a_builtin_suite_at_the_papers_budget() -> None:
    assert "paper-imagenet" in BUILTIN_SUITES
    cfg = load_config("paper-imagenet")
    assert cfg.data["dataset"] == "imagenet-photos"
    assert [m.params["zoo"] for m in cfg.models] == ["efficientnet-lite0"]
    evo = {m.name: m.params for m in cfg.methods if m.kind == "map-elites"}
    for name, encoding in (("evolve-cppn", "cppn"), ("evolve-direct", "direct")):
        p = evo[name]
        assert (p["encoding"], p["max_evaluations"], p["batch_size"], p["classes"]) == (encoding, 2_000_000, 512, None)
    assert any(m.kind == "random" for m in cfg.methods)
    (sampled,) = [m.params for m in cfg.methods if m.kind == "random-search"]  # the equal-budget baseline
    assert (sampled["encoding"], sampled["max_evaluations"]) == ("cppn", evo["evolve-cppn"]["max_evaluations"])
    assert sum(1 for m in cfg.methods if m.group == "diverse-cppn") == 5


def tiny_imagenet() -> dict[str, Any]:
    """The shipped paper-imagenet file, shrunk: 3 classes, 8 evaluations, 32-pixel images, 2 runs."""
    raw = tomllib.loads(resources.files("foolbench.bench").joinpath("suites/paper-imagenet.toml").read_text())
    raw["data"]["size"] = 32
    raw["models"][0]["image_size"] = 32
    for m in raw["methods"]:
        if m["kind"] == "random":
            m["n"] = 4
        else:
            m.update(batch_size=8, max_evaluations=8, classes=[207, 530, 963])
            if "runs" in m:
                m["runs"] = 2
    return raw


def test_a_tiny_paper_imagenet_runs_on_cpu(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("skimage")
    res = run_suite(parse_config(tiny_imagenet(), source="paper-imagenet.toml"), out=tmp_path, progress=False)
    assert not res["failed"] and len(res["cells"]) == 1 + 2 + 1 + 2
    evo = next(c for c in res["cells"] if c["method"] == "evolve-cppn")
    assert evo["metrics"]["class_indices"] == [207, 530, 963] and len(evo["metrics"]["confidence"]) == 3
    assert (tmp_path / evo["metrics"]["grid"]).is_file()
    claims = {r["claim"]: r["measured"] for r in res["claims"]}
    assert "/3 >= 99.6%" in claims["CPPN images fool an ImageNet net for many classes"]
    assert (
        "efficientnet-lite0" in claims["Direct-encoded evolved images fool an ImageNet net less often than CPPN images"]
    )
    sampled = claims["Evolution, not sampling, finds them: random images at the same budget fool few classes"]
    assert sampled.startswith("cppn on imagenet-photos, 8 evaluations: random sampling efficientnet-lite0: 0/3")
    assert "; evolution efficientnet-lite0: " in sampled  # the CPPN searches at the same budget
    (div,) = res["diversity"]
    assert div["runs"] == 2 and "too few" in div["reference"]  # one shipped photo per class: no reference


def test_grouping_of_imagenet_classes_covers_every_index_once() -> None:
    spans = sorted(s for _, group in IMAGENET_GROUPS for s in group)
    covered = [i for lo, hi in spans for i in range(lo, hi + 1)]
    assert covered == list(range(1000))
    assert imagenet_group(151) == imagenet_group(268) != imagenet_group(269)
    assert imagenet_group(999) == imagenet_group(500)


def fake_results(confidence: list[float]) -> dict[str, Any]:
    """A results dict with one 1,000-class ImageNet evolution cell (the report is a pure function of it)."""
    cell = {
        "key": "k", "model": "efficientnet-lite0", "defense": "none", "defense_kind": "none", "method": "evolve-cppn",
        "method_kind": "map-elites", "params": {"encoding": "cppn"}, "seed": 0,
        "metrics": {"classes": 1000, "fooled_0_99": 0.5, "fooled_0_996": 0.4, "fooled_0_9999": 0.1,
                    "median_confidence": 0.9, "evaluations": 2000000, "seconds": 1.0,
                    "median_evaluations_to_0_99": None, "median_evaluations_to_0_9999": None, "curve": [],
                    "curve_quantiles": [], "class_indices": list(range(1000)), "confidence": confidence},
    }  # fmt: skip
    return {
        "suite": "s", "foolbench": "0", "torch": "0", "python": "3", "device": "cuda", "seed": 0, "seconds": 1.0,
        "data": {"dataset": "imagenet-photos"}, "failed": [], "clean": [], "transfer": {}, "defense_tables": [],
        "settings": {"torch_threads": 1, "models": [{"name": "efficientnet-lite0", "zoo": "efficientnet-lite0"}]},
        "cells": [cell], "claims": [], "diversity": [],
    }  # fmt: skip


def test_super_categories_report_median_and_share_per_group() -> None:
    # dogs at 0.995, everything else at 0.2, except food at 0.999
    conf = [0.995 if 151 <= i <= 268 else 0.999 if 924 <= i <= 969 else 0.2 for i in range(1000)]
    lines = super_categories_section(fake_results(conf))
    rows = {line.split(" | ")[3]: line.split(" | ")[4:] for line in lines if line.startswith("| efficientnet")}
    assert rows["dogs (151-268)"] == ["118", "99.50%", "100.00% |"]
    assert rows["food and drink (924-969)"] == ["46", "99.90%", "100.00% |"]
    assert rows["man-made objects (398-923, 999)"] == ["527", "20.00%", "0.00% |"]
    assert "## Which ImageNet super-categories fool most" in markdown(fake_results(conf))


def test_evolution_plots_and_their_absence_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from foolbench.bench._report import write_reports

    results = fake_results([i / 1000 for i in range(1000)])
    results["cells"][0]["metrics"]["curve_quantiles"] = [
        [64.0, 0.1, 0.2, 0.3, 0.4, 0.5],
        [128.0, 0.2, 0.3, 0.4, 0.5, 0.6],
    ]
    write_reports(results, tmp_path / "with")
    report = (tmp_path / "with" / "report.md").read_text()
    for name in ("confidence_histogram", "confidence_quantiles_vs_evaluations"):
        assert (tmp_path / "with" / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG" and name in report
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    write_reports(results, tmp_path / "without")
    assert (
        not (tmp_path / "without" / "plots").exists()
        and "## Plots" not in (tmp_path / "without" / "report.md").read_text()
    )


def test_grid_shows_the_most_confident_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from foolbench.bench import _methods

    monkeypatch.setattr(_methods, "GRID_LIMIT", 3)
    monkeypatch.setattr(_methods, "KEEP_IMAGES_LIMIT", 5)  # 10 classes: more than that, the elites are not kept
    cfg = {
        "data": {"dataset": "mnist", "train": 50, "test": 50},
        "models": [{"zoo": "lenet-mnist"}],
        "methods": [{"kind": "map-elites", "max_evaluations": 128, "batch_size": 64}],
    }
    (cell,) = run_suite(parse_config(cfg), out=tmp_path, progress=False)["cells"]
    m = cell["metrics"]
    order = sorted(range(10), key=lambda i: -m["confidence"][i])
    assert m["grid_classes"] == [m["class_indices"][i] for i in order[:3]]
    assert (tmp_path / m["grid"]).is_file() and not (tmp_path / "cells" / f"{cell['key']}.pt").exists()
    q = torch.tensor(m["curve_quantiles"])
    assert q.shape[1] == 6 and bool((q[:, 1:].diff(dim=1) >= 0).all())  # q10 <= q25 <= median <= q75 <= q90


def test_random_baseline_names_the_class_that_takes_the_noise(tmp_path: Path) -> None:
    cfg = {
        "data": {"dataset": "mnist", "train": 50, "test": 200},
        "models": [{"zoo": "lenet-mnist"}, {"zoo": "lenet-mnist-noise-trained"}],
        "methods": [{"kind": "random", "n": 64}],
    }
    res = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    by = {c["model"]: c["metrics"] for c in res["cells"]}
    shipped, trained = by["lenet-mnist"], by["lenet-mnist-noise-trained"]
    # the shipped LeNet calls uniform noise an 8, confidently; noise is far brighter than the digits
    assert shipped["direct_top_class_name"] == "8" and shipped["direct_top_class_share"] > 0.9
    assert shipped["direct_median_confidence"] > 0.9 and trained["direct_median_confidence"] < 0.5
    assert abs(shipped["direct_mean_pixel"] - 0.5) < 0.05 and shipped["data_mean_pixel"] < 0.2
    claim = next(r["measured"] for r in res["claims"] if r["claim"].startswith("Random, unevolved"))
    assert "premise does not hold for this model" in claim and "called '8'" in claim
    assert "lenet-mnist-noise-trained" in claim and "a model trained for it" in claim
    assert "8 (" in (tmp_path / "report.md").read_text()


def test_figures_fitted_on_a_one_split_dataset_are_called_in_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """imagenet-photos gives its photos as both splits: a UAP fitted on them, or a model trained on them,
    was scored on them under "held-out" without a word."""
    (tmp_path / "tiny_models.py").write_text(
        "import torch.nn as nn\n\n\ndef linear(num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = {
        "data": {"dataset": "imagenet-photos", "size": 16},
        "models": [{"name": "tiny", "factory": "tiny_models:linear", "input_shape": [3, 16, 16],
                    "num_classes": 1000, "train_epochs": 1}],
        "methods": [{"kind": "uap", "fit": 3, "held_out": 3, "max_passes": 1},
                    {"kind": "pgd", "eps": 0.1, "n": 3, "steps": 1}],
    }  # fmt: skip
    with pytest.warns(
        UserWarning, match=r"same images .*: tiny: its training; tiny: method uap\(fit=3,held_out=3,max_passes=1\)$"
    ):
        res = run_suite(parse_config(cfg), out=tmp_path / "out", progress=False)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "**In-sample figures:**" in report and "tiny: method uap" in report and "method pgd" not in report
    assert "In-sample" not in markdown(fake_results([0.5] * 1000))  # a zoo model's search fits nothing
    assert res["cells"]
