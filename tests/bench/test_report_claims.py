"""The claims table reads the right cells: counts of averaged runs, one entry per defense, kinds not names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import foolbench as fb
from foolbench.bench._diversity import penultimate
from foolbench.bench._report import _count, _diversity, _evolved, _retraining


def _cell(key: str, defense: str, defense_kind: str, fooled: float, group: str | None = "evo") -> dict[str, Any]:
    return {
        "key": key,
        "model": "lenet",
        "defense": defense,
        "defense_kind": defense_kind,
        "method": f"evo-{key}",
        "method_kind": "map-elites",
        "group": group,
        "params": {"encoding": "direct", "max_evaluations": 100},
        "metrics": {
            "classes": 10,
            "fooled_0_9999": fooled,
            "fooled_0_99": fooled,
            "fooled_0_996": fooled,
            "median_confidence": 0.99,
            "evaluations": 100,
        },
    }


def _results(cells: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    return {"cells": cells, "settings": {"models": [{"name": "lenet"}]}, "data": {"dataset": "mnist"}, **more}


def test_a_mean_over_runs_is_never_rounded_up_to_every_class() -> None:
    """Five runs, one of which missed a digit, read "10/10 classes >= 99.99%"."""
    runs = [_cell(f"r{i}", "none", "none", 1.0 if i < 4 else 0.9) for i in range(5)]
    text = _evolved(_results(runs), "direct")
    assert text is not None and "9.8/10 classes >= 99.99%" in text and "10/10" not in text
    assert "10/10 classes >= 99.99%" in str(_evolved(_results(runs[:4]), "direct"))
    assert (_count(0.995, 10), _count(0.3, 10), _count(0.96, 10)) == ("9.9", "3", "9.6")


def test_retraining_entries_are_per_defense_and_model() -> None:
    """Two fooling-class defenses' runs were averaged into one entry, shown under every defense's table."""
    cells = [_cell("a0", "fc-a", "fooling-class", 1.0), _cell("a1", "fc-a", "fooling-class", 1.0)]
    cells += [_cell("b0", "fc-b", "fooling-class", 0.0), _cell("b1", "fc-b", "fooling-class", 0.0)]
    both = _evolved(_results(cells), "direct", "fooling-class")
    assert both is not None
    assert "lenet + fc-a (evo, mean of 2 runs): 10/10" in both and "lenet + fc-b (evo, mean of 2 runs): 0/10" in both
    rows = [{"fresh_median_confidence": 0.5, "round": 1, "fresh_fooled": 0.1}]
    tables = [{"model": "lenet", "defense": "fc-a", "rows": rows}]
    text = _retraining(_results(cells, defense_tables=tables))
    assert text is not None and "fc-a" in text and "fc-b" not in text


def test_the_diversity_claim_reads_the_defense_kind() -> None:
    """An undefended model under another name ('undefended', kind 'none') left the claim 'not in this suite'."""
    entry = {"model": "lenet", "method": "evo", "runs": 3, "mean_confidence": 0.99, "median_pixel": 0.3}
    measured = [
        {**entry, "defense": "undefended", "defense_kind": "none", "median_real_pixel": 0.2},
        {**entry, "defense": "none", "defense_kind": "squeeze", "median_real_pixel": None, "model": "squeezed"},
    ]
    text = _diversity(_results([], diversity=measured))
    assert text is not None and text.startswith("lenet / evo: 3 runs") and "squeezed" not in text
    old = {**entry, "defense": "none", "median_real_pixel": None}  # results written before defense_kind
    assert _diversity(_results([], diversity=[old])) is not None


def test_an_ensemble_has_no_penultimate_features() -> None:
    """The last Linear of an ensemble's modules is its last member's head: not the ensemble's features."""
    lenet = fb.models.lenet_mnist()
    x = torch.rand(3, 1, 28, 28)
    feats = penultimate(lenet, x)
    assert feats is not None and feats.shape[0] == 3
    assert penultimate(fb.defenses.Ensemble([lenet, fb.models.lenet_mnist()]), x) is None


def test_the_cost_benefit_plot_names_each_cells_eps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two PGD methods with other eps lists were plotted at their own largest eps under the first one's."""
    import foolbench.bench._report as report

    labels: dict[str, tuple[str, list[str]]] = {}

    def keep(fig: Any, path: Path, out: Path) -> str:
        ax = fig.axes[0]
        labels[path.name] = (ax.get_ylabel(), [t.get_text() for t in ax.texts])
        return path.name

    monkeypatch.setattr(report, "_save", keep)

    def pgd(method: str, robust: dict[str, float]) -> dict[str, Any]:
        return {"model": "lenet", "defense": "none", "method": method, "method_kind": "pgd", "metrics": {
            "clean_accuracy": 0.99, "robust_accuracy": robust}}  # fmt: skip

    clean = [{"model": "lenet", "defense": "none", "clean_accuracy": 0.99}]
    two = [pgd("pgd-small", {"0.1": 0.8}), pgd("pgd-large", {"0.1": 0.8, "0.3": 0.1})]
    report._plots(_results(two, clean=clean), tmp_path)
    ylabel, texts = labels["defense_cost_vs_benefit.png"]
    assert ylabel == "robust accuracy at each PGD method's largest eps (benefit)"
    assert texts == ["lenet/none (pgd-small, eps 0.1)", "lenet/none (pgd-large, eps 0.3)"]
    report._plots(_results(two[1:], clean=clean), tmp_path)
    assert labels["defense_cost_vs_benefit.png"] == ("robust accuracy at eps 0.3 (benefit)", ["lenet/none"])


def test_claimed_medians_are_never_rounded_up_to_a_threshold() -> None:
    """A median of 99.987% read "99.99%" next to the published ">= 99.99%" (and 99.9996% read 100.00%)."""
    cell = _cell("a", "none", "none", 0.4)
    cell["metrics"]["median_confidence"] = 0.999872
    text = _evolved(_results([cell]), "direct")
    assert text is not None and "median 99.98%" in text and "99.99%)" not in text
    rows = [{"fresh_median_confidence": 0.999996, "round": 1, "fresh_fooled": 0.1}]
    tables = [{"model": "lenet", "defense": "none", "rows": rows}]
    assert "fresh search median 99.99% " in str(_retraining(_results([cell], defense_tables=tables)))
