from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from foolbench.bench import CellTask, factories, parse_config, run_suite
from foolbench.bench._store import file_key

NAMES = ["a/b", "a-b", "pgd a", "pgd-a", "ünï/cödé", "数字", "x" * 300]


def count_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = CellTask.run
    monkeypatch.setattr(CellTask, "run", lambda self: (calls.append(self.key), original(self))[1])
    return calls


def test_file_keys_are_injective_bounded_and_safe() -> None:
    keys = [file_key(n) for n in NAMES] + [file_key("a", "b__c"), file_key("a__b", "c")]
    assert len(set(keys)) == len(keys)
    for k in keys:
        assert len(k) <= 64 and k.isascii() and "/" not in k and not k.startswith(".")


def test_names_that_sanitise_alike_never_share_a_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlp = {"factory": "foolbench.bench.factories:mlp", "input_shape": [1, 28, 28], "num_classes": 10}
    cfg = {
        "data": {"dataset": "mnist", "train": 64, "test": 64},
        "models": [{"zoo": "lenet-mnist", "name": "a/b"}, {**mlp, "name": "a-b"}, {**mlp, "name": "x" * 300}],
        "methods": [{"kind": "random", "n": 8 + i, "name": n} for i, n in enumerate(NAMES)],
    }
    res = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert not res["failed"] and len(res["cells"]) == 3 * len(NAMES)
    assert len(list((tmp_path / "cells").glob("*.json"))) == 3 * len(NAMES)
    clean = {c["model"]: c["clean_accuracy"] for c in res["clean"]}
    assert clean["a/b"] > 0.9 and clean["a-b"] < 0.5  # trained LeNet vs an untrained perceptron: never mixed up
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert all(n in report for n in ["a/b", "a-b", "ünï/cödé", "数字"])
    calls = count_runs(monkeypatch)
    again = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert calls == [] and again["cells"] == res["cells"]  # each cell found again under its own key


def small(defense: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": {"dataset": "mnist", "train": 64, "test": 64},
        "models": [
            {
                "name": "net",
                "factory": "foolbench.bench.factories:mlp",
                "input_shape": [1, 28, 28],
                "num_classes": 10,
                "train_epochs": 1,
            }
        ],
        "defenses": [defense],
        "methods": [{"kind": "random", "n": 8}, {"kind": "map-elites", "max_evaluations": 128, "classes": [0]}],
    }


def test_a_renamed_alike_defense_or_changed_model_is_recomputed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_runs(monkeypatch)
    run_suite(parse_config(small({"kind": "median", "name": "d"})), out=tmp_path, progress=False)
    assert len(calls) == 2
    res = run_suite(parse_config(small({"kind": "bit-depth", "name": "d"})), out=tmp_path, progress=False)
    assert len(calls) == 4 and {c["defense_kind"] for c in res["cells"]} == {"bit-depth"}
    # the search checkpoint of the median cell is not the bit-depth cell's: one folder per digest
    assert len(list((tmp_path / "checkpoints").glob("*"))) == 4
    # same suite, other weights (a changed factory): every cell and the trained model are new
    monkeypatch.setattr(factories, "mlp", lambda k: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, k)))
    run_suite(parse_config(small({"kind": "bit-depth", "name": "d"})), out=tmp_path, progress=False)
    assert len(calls) == 6 and len(list((tmp_path / "models").glob("*.pt"))) == 2


def test_retraining_defense_with_other_rounds_uses_its_own_model(tmp_path: Path) -> None:
    defense = {"kind": "uap-fine-tuning", "name": "ft", "rounds": 1, "epochs": 1, "fit": 32, "max_passes": 1}
    one = run_suite(parse_config(small(defense)), out=tmp_path, progress=False)
    two = run_suite(parse_config(small({**defense, "rounds": 2})), out=tmp_path, progress=False)
    back = run_suite(parse_config(small(defense)), out=tmp_path, progress=False)
    assert len(one["defense_tables"][0]["rows"]) == 2 and len(two["defense_tables"][0]["rows"]) == 3
    assert back["defense_tables"] == one["defense_tables"]
    assert len(list((tmp_path / "defenses").glob("*"))) == 2


CORRUPTIONS = {
    "nan metric": lambda c: c["metrics"].update(direct_median_confidence=math.nan),
    "out of range": lambda c: c["metrics"].update(direct_share_at_0_99=None, cppn_max_confidence=1.7),
    "a list": lambda c: [],
    "missing key": lambda c: {k: v for k, v in c.items() if k != "metrics"},
    "wrong type": lambda c: {**c, "metrics": "high"},
    "other model": lambda c: {**c, "model": "someone-else"},
}


@pytest.mark.parametrize("how", [*CORRUPTIONS, "not utf-8", "not json"])
def test_bad_cached_cells_are_recomputed_with_a_warning(tmp_path: Path, how: str) -> None:
    cfg = small({"kind": "none"})
    cfg["methods"] = cfg["methods"][:1]
    first = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    (path,) = (tmp_path / "cells").glob("*.json")
    if how == "not utf-8":
        path.write_bytes(b"\xff\xfe{" + path.read_bytes())
    elif how == "not json":
        path.write_text('{"key": ')
    else:
        cell = CORRUPTIONS[how](json.loads(path.read_text()))
        path.write_text(json.dumps(cell, allow_nan=True))
    with pytest.warns(UserWarning, match=rf"recomputing cell '{path}'"):
        again = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert again["cells"][0]["metrics"] == first["cells"][0]["metrics"]
    assert json.loads(path.read_text())["metrics"] == first["cells"][0]["metrics"]  # repaired on disk


def test_fresh_recomputes_everything_and_settings_are_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_runs(monkeypatch)
    first = run_suite(parse_config(small({"kind": "none"})), out=tmp_path, progress=False)
    run_suite(parse_config(small({"kind": "none"})), out=tmp_path, progress=False)
    assert len(calls) == 2
    again = run_suite(parse_config(small({"kind": "none"})), out=tmp_path, progress=False, fresh=True)
    assert len(calls) == 4 and again["settings"]["fresh"] is True
    assert [c["metrics"]["direct_max_confidence"] for c in again["cells"][:1]] == [
        c["metrics"]["direct_max_confidence"] for c in first["cells"][:1]
    ]
    on_disk = json.loads((tmp_path / "results.json").read_text())
    settings = on_disk["settings"]
    assert settings["torch_threads"] == torch.get_num_threads() >= 1
    assert settings["methods"][1]["params"]["batch_size"] == 64  # defaults are recorded, not only what was written
    assert settings["models"][0]["train_epochs"] == 1 and settings["executor"] == "LocalExecutor()"
