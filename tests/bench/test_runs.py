"""``runs = N``: independent runs as cells, and the diversity measured across them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import foolbench as fb
from foolbench.bench import parse_config, run_suite
from foolbench.bench._diversity import mean_pairwise, penultimate
from foolbench.errors import ConfigError


def runs_suite(runs: int = 3) -> dict[str, Any]:
    return {
        "suite": {"seed": 1},
        "data": {"dataset": "mnist", "train": 60, "test": 200},
        "models": [{"zoo": "lenet-mnist"}],
        "methods": [
            {"kind": "map-elites", "name": "evo", "max_evaluations": 192, "batch_size": 64, "runs": runs,
             "classes": [1, 7]},
            {"kind": "random", "n": 8},
        ],
    }  # fmt: skip


def test_runs_expand_into_cells_at_parse_time() -> None:
    cfg = parse_config(runs_suite(3))
    evo = [m for m in cfg.methods if m.kind == "map-elites"]
    assert [(m.name, m.group, m.run) for m in evo] == [("evo#run1", "evo", 1), ("evo#run2", "evo", 2),
                                                       ("evo#run3", "evo", 3)]  # fmt: skip
    assert all(m.params["runs"] == 3 for m in evo)
    one = parse_config(runs_suite(1))
    assert [(m.name, m.run) for m in one.methods if m.kind == "map-elites"] == [("evo", None)]


@pytest.mark.parametrize(("runs", "match"), [(0, r"runs must be in \[1, 100\]"), (2.5, "runs must be an integer")])
def test_bad_runs_are_named(runs: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(runs_suite(runs))


def test_runs_on_a_kind_without_runs_is_an_unknown_key() -> None:
    cfg = runs_suite()
    cfg["methods"][1]["runs"] = 2
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['runs'\]"):
        parse_config(cfg)


def test_mean_pairwise_and_penultimate_features(lenet: fb.models.TorchClassifier) -> None:
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    # pairs: (0,1) = 2, (0,2) = 2, (1,2) = 0 -> mean 4/3, divided by sqrt(4)
    assert mean_pairwise(x) == pytest.approx(4 / 3 / 2)
    images = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    feats = penultimate(lenet, images)
    net = lenet.network()
    z = (images - fb.models.MNIST_MEAN) / fb.models.MNIST_STD
    z = F.max_pool2d(F.relu(net.conv1(z)), 2)
    z = F.max_pool2d(F.relu(net.conv2(z)), 2)
    expected = F.relu(net.fc1(z.flatten(1)))
    assert feats is not None and feats.shape == (5, 500)
    torch.testing.assert_close(feats, expected.double(), atol=1e-5, rtol=1e-5)
    assert not net.fc2._forward_pre_hooks  # the hook is removed


def test_runs_are_independent_and_their_diversity_is_measured(tmp_path: Path) -> None:
    res = run_suite(parse_config(runs_suite(3)), out=tmp_path, progress=False)
    assert not res["failed"]
    runs = [c for c in res["cells"] if c.get("group") == "evo"]
    assert [c["run"] for c in runs] == [1, 2, 3] and len({c["seed"] for c in runs}) == 3
    images = [torch.load(tmp_path / "cells" / f"{c['key']}.pt")["images"] for c in runs]
    assert not torch.equal(images[0], images[1])  # other seeds, other elites
    (div,) = res["diversity"]
    assert (div["model"], div["method"], div["runs"], div["classes"]) == ("lenet-mnist", "evo", 3, [1, 7])
    for j in range(2):  # the report's figures are the measure of the saved elites
        assert div["pixel"][j] == pytest.approx(mean_pairwise(torch.stack([im[j] for im in images])))
        x, y = fb.models.mnist_digits("test", limit=200)
        assert div["real_count"][j] == int((y == div["classes"][j]).sum())
        assert div["real_pixel"][j] == pytest.approx(mean_pairwise(x[y == div["classes"][j]]))
        assert div["feature"][j] is not None and div["feature"][j] > 0
    confidence = [c["metrics"]["confidence"] for c in runs]
    assert div["mean_confidence"] == pytest.approx(sum(map(sum, confidence)) / 6)
    report = (tmp_path / "report.md").read_text()
    assert "## Diversity across independent runs" in report and "held-out split of 'mnist'" in report
    claim = next(r for r in res["claims"] if r["claim"].startswith("Evolved images selected across 5 runs"))
    assert "3 runs" in claim["measured"]
    direct = next(r for r in res["claims"] if r["claim"].startswith("Direct-encoded"))
    assert "mean of 3 runs" in direct["measured"] and direct["measured"].count("lenet-mnist") == 1
    # resumed: nothing recomputed, the same diversity
    again = run_suite(parse_config(runs_suite(3)), out=tmp_path, progress=False)
    assert again["diversity"][0]["pixel"] == div["pixel"] and math.isfinite(again["diversity"][0]["median_pixel"])


def test_runs_fan_out_through_any_executor_with_the_same_result(tmp_path: Path) -> None:
    from tests.bench.test_executor import ReversedPickling

    local = run_suite(parse_config(runs_suite(2)), out=tmp_path / "a", progress=False)
    other = run_suite(parse_config(runs_suite(2)), out=tmp_path / "b", progress=False, executor=ReversedPickling())

    def timeless(res: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in c["metrics"].items() if k != "seconds"} for c in res["cells"]]

    assert timeless(local) == timeless(other)
    drop = {"run_cells"}
    assert [{k: v for k, v in d.items() if k not in drop} for d in local["diversity"]] == [
        {k: v for k, v in d.items() if k not in drop} for d in other["diversity"]
    ]
    assert [c["seed"] for c in local["cells"]] == [c["seed"] for c in other["cells"]]


def test_warmup_on_every_class_seeds_the_focused_search(tmp_path: Path) -> None:
    """``warmup = 0.25``: a quarter of the budget on all 10 digits, then digits 1 and 7 from those elites."""
    cfg = runs_suite(1)
    cfg["methods"][0].update(max_evaluations=256, warmup=0.25)
    res = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    (cell,) = [c for c in res["cells"] if c["method"] == "evo"]
    # warm-up: one generation of 64 on every class; then the 2 seeded elites and whole generations of 64
    assert cell["metrics"]["evaluations"] == 64 + 2 + 3 * 64
    plain = runs_suite(1)
    plain["methods"][0].update(max_evaluations=256)
    other = run_suite(parse_config(plain), out=tmp_path / "plain", progress=False)
    (base,) = [c for c in other["cells"] if c["method"] == "evo"]
    assert cell["digest"] != base["digest"]  # the warm-up is part of what determines the cell
    with pytest.raises(ConfigError, match=r"warmup must be in \[0, 0.9\]"):
        bad = runs_suite(1)
        bad["methods"][0]["warmup"] = 1.0
        parse_config(bad)


def test_strength_reaches_the_search(tmp_path: Path) -> None:
    """``strength = 2``: a constant mutation strength, recorded in the cell; with a decay it is refused."""
    cfg = runs_suite(1)
    cfg["methods"] = [cfg["methods"][0]]
    cfg["methods"][0].update(strength=2.0, max_evaluations=128)
    res = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert res["cells"][0]["params"]["strength"] == 2.0
    ckpt = next(tmp_path.rglob("map-elites.pt"))
    config = torch.load(ckpt, weights_only=True)["config"]
    assert config["mutation_schedule"] == {"name": "constant", "strength": 2.0}
    cfg["methods"][0]["decay_factor"] = 0.5
    with pytest.raises(ConfigError, match="not both"):
        parse_config(cfg)


def test_precision_and_verify_reach_the_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``precision = "bf16"``, ``verify = true``: the search scores with the bf16 adapter and verifies."""
    seen: list[tuple[str, bool]] = []
    original = fb.search.MAPElites.__init__

    def spy(self: fb.search.MAPElites, classifier: Any, *args: Any, **kwargs: Any) -> None:
        seen.append((classifier.precision, kwargs.get("verify", False)))
        original(self, classifier, *args, **kwargs)

    monkeypatch.setattr(fb.search.MAPElites, "__init__", spy)
    cfg = runs_suite(1)
    cfg["methods"] = [cfg["methods"][0]]
    cfg["methods"][0].update(precision="bf16", verify=True)
    res = run_suite(parse_config(cfg), out=tmp_path / "bf16", progress=False)
    assert seen == [("bf16", True)]
    plain = runs_suite(1)
    plain["methods"] = [plain["methods"][0]]
    other = run_suite(parse_config(plain), out=tmp_path / "fp32", progress=False)
    assert seen[1:] == [("fp32", False)]
    assert res["cells"][0]["digest"] != other["cells"][0]["digest"]


def test_map_elites_parents_favour_the_classes_below_the_target(tmp_path: Path) -> None:
    cfg = runs_suite(1)
    cfg["methods"] = [cfg["methods"][0]]
    cfg["methods"][0].update(target_confidence=0.9, parents="weakest")
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    config = torch.load(next(tmp_path.rglob("map-elites.pt")), weights_only=True)["config"]
    assert config["parents"] == {"name": "weakest", "confidence": 0.9}
    # curiosity after a warm-up on every class: the focused search keeps scores of its own niches
    cfg["methods"][0].update(parents="curiosity", warmup=0.5)
    res = run_suite(parse_config(cfg), out=tmp_path / "warm", progress=False)
    assert not res["failed"] and len(res["cells"]) == 1
    config = torch.load(next((tmp_path / "warm").rglob("map-elites.pt")), weights_only=True)["config"]
    assert config["parents"]["name"] == "curiosity" and config["parents"]["confidence"] == 0.9


def test_precision_needs_a_torch_classifier_and_a_known_value(tmp_path: Path) -> None:
    cfg = runs_suite(1)
    cfg["methods"] = [cfg["methods"][0]]
    cfg["methods"][0]["precision"] = "fp8"
    with pytest.raises(ConfigError, match=r"precision must be one of"):
        parse_config(cfg)
    cfg["methods"][0]["precision"] = "bf16"
    cfg["defenses"] = [{"kind": "none"}, {"kind": "median", "size": 3}]
    res = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    # the undefended cell runs; the defended one fails alone, saying why, and the suite goes on
    assert [c["defense"] for c in res["cells"]] == ["none"]
    (failed,) = res["failed"]
    assert failed["defense"] == "median"
    assert "precision = 'bf16' needs a model the suite runs as a TorchClassifier" in failed["error"]


def test_more_runs_keep_the_cells_of_the_earlier_runs(tmp_path: Path) -> None:
    """``runs = 3`` raised to 5: runs 1-3 have the same names, seeds and keys, so the same digests (reused)."""
    from foolbench.bench._suite import _Driver
    from foolbench.bench._workspace import Workspace

    def tasks(runs: int) -> dict[str, tuple[str, int, str]]:
        cfg = parse_config(runs_suite(runs))
        driver = _Driver(cfg, tmp_path, Workspace(cfg, tmp_path, None), None, False)
        cells = (driver.task("lenet-mnist", cfg.defenses[0], m) for m in cfg.methods)
        return {t.method: (t.key, t.seed, t.digest) for t in cells}

    three, five = tasks(3), tasks(5)
    assert len(five) == 6 and all(five[name] == cell for name, cell in three.items())


class HeadFirst(torch.nn.Module):
    """A head registered before the body it follows: the last Linear registered is the first one run."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(32, 10)
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class TwiceAtTheEnd(torch.nn.Module):
    """Its last Linear runs twice per pass: the features are the input of its second call."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        self.square = torch.nn.Linear(10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.square(torch.relu(self.square(self.body(x))))


@pytest.mark.parametrize("batch_size", [256, 2])
def test_penultimate_features_are_the_input_of_the_last_linear_run(batch_size: int) -> None:
    torch.manual_seed(0)
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    head_first = HeadFirst().eval()
    clf = fb.models.TorchClassifier(head_first, input_shape=(1, 28, 28), num_classes=10, batch_size=batch_size)
    feats = penultimate(clf, x)
    assert feats is not None and feats.shape == (5, 32), "raw pixels were taken for the features"
    torch.testing.assert_close(feats, head_first.body(x).double().detach(), atol=1e-5, rtol=1e-5)
    twice = TwiceAtTheEnd().eval()
    clf = fb.models.TorchClassifier(twice, input_shape=(1, 28, 28), num_classes=10, batch_size=batch_size)
    feats = penultimate(clf, x)
    assert feats is not None and feats.shape == (5, 10)
    expected = torch.relu(twice.square(twice.body(x))).double().detach()
    torch.testing.assert_close(feats, expected, atol=1e-5, rtol=1e-5)
    assert not any(m._forward_pre_hooks for m in [*head_first.modules(), *twice.modules()])  # hooks removed
    no_linear = torch.nn.Sequential(torch.nn.Conv2d(1, 10, 28), torch.nn.Flatten()).eval()
    assert penultimate(fb.models.TorchClassifier(no_linear, input_shape=(1, 28, 28), num_classes=10), x) is None


def test_one_real_image_per_class_is_no_reference(tmp_path: Path) -> None:
    """A held-out split with one image of each class has no pairwise distance to compare with: said so."""
    import numpy as np

    x, y = fb.models.mnist_digits("test", limit=200)
    one = torch.stack([(y == c).nonzero()[0, 0] for c in range(10)])
    np.savez(tmp_path / "one.npz", x_train=x.numpy(), y_train=y.numpy(), x_test=x[one].numpy(), y_test=y[one].numpy())
    cfg = runs_suite(2)
    cfg["data"] = {"dataset": "one.npz"}
    cfg["methods"] = [{**cfg["methods"][0], "max_evaluations": 64}]
    res = run_suite(parse_config(cfg, folder=tmp_path), out=tmp_path / "out", progress=False)
    (div,) = res["diversity"]
    assert div["real_count"] == [1, 1] and div["real_pixel"] == [None, None]
    assert "too few" in div["reference"], div["reference"]
    assert "held-out split" not in (tmp_path / "out" / "report.md").read_text()
