from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import foolbench as fb
from foolbench.bench import SCHEMA, CellTask, load_config, parse_config, run_suite
from foolbench.bench._store import file_key
from foolbench.cli import main
from foolbench.errors import ConfigError

USER_MODULE = """
import torch

def tiny(num_classes):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, num_classes))

def wrong_shape(num_classes):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, num_classes + 3))
"""


def small_suite(**models: Any) -> dict[str, Any]:
    return {
        "suite": {"name": "small", "seed": 0},
        "data": {"dataset": "mnist", "train": 500, "test": 200},
        "models": [
            {"zoo": "lenet-mnist"},
            {
                "name": "user",
                "factory": "user_models:tiny",
                "input_shape": [1, 28, 28],
                "num_classes": 10,
                "train_epochs": 5,
                **models,
            },
        ],
        "defenses": [{"kind": "none"}, {"kind": "median", "size": 3}],
        "methods": [
            {"kind": "random", "n": 32},
            {"kind": "map-elites", "encoding": "direct", "max_evaluations": 1500},
            {"kind": "pgd", "eps": [0.1, 0.3], "n": 64, "steps": 10},
            {"kind": "uap", "eps": 0.3, "fit": 100, "held_out": 200, "max_passes": 2},
        ],
    }


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "user_models.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(pkg))


def test_suite_results_schema_reports_and_user_factory(user_module: None, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_suite(parse_config(small_suite()), out=out, progress=False)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["schema"] == SCHEMA == res["schema"]
    for key in (
        "suite",
        "foolbench",
        "torch",
        "python",
        "device",
        "seed",
        "data",
        "config",
        "clean",
        "cells",
        "claims",
    ):
        assert key in on_disk, key
    assert on_disk["foolbench"] == fb.__version__ and on_disk["torch"] == torch.__version__
    assert len(on_disk["cells"]) == 2 * 2 * 4
    by = {(c["model"], c["defense"], c["method_kind"]): c["metrics"] for c in on_disk["cells"]}
    evo = by[("lenet-mnist", "none", "map-elites")]
    assert evo["evaluations"] == 1536 and (out / evo["grid"]).is_file()  # 24 whole generations of 64
    conf = evo["confidence"]  # per class; the share at >= 99% is computed from it
    assert len(conf) == 10 and evo["fooled_0_99"] == pytest.approx(sum(c >= 0.99 for c in conf) / 10)
    # lenet calls uniform noise an 8 at ~99.8% (the random baseline shows it): that elite is there at once
    assert by[("lenet-mnist", "none", "random")]["direct_top_class"] == 8 and conf[8] >= 0.99
    assert set(by[("user", "median", "pgd")]["robust_accuracy"]) == {"0.1", "0.3"}
    assert by[("user", "none", "uap")]["fooling_rate"] > 0.25  # eps 0.3 against a small MLP (measured 0.335)
    # the user's model was trained: it reads held-out digits far above chance
    clean = {(c["model"], c["defense"]): c["clean_accuracy"] for c in on_disk["clean"]}
    assert clean[("user", "none")] > 0.6
    assert len(on_disk["transfer"]["uap"]["matrix"]) == 2 and len(on_disk["transfer"]["pgd"]["matrix"][0]) == 2
    claims = {c["claim"]: c for c in on_disk["claims"]}
    assert any("Direct-encoded" in c for c in claims)
    report = (out / "report.md").read_text()
    assert "## Published claims" in report and not on_disk["failed"] and "| lenet-mnist | median |" in report
    assert (out / "plots" / "robust_accuracy_vs_eps.png").is_file()


def test_resume_skips_finished_cells(user_module: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = small_suite()
    cfg["defenses"] = [{"kind": "none"}]
    out = tmp_path / "out"
    calls: list[str] = []
    original = CellTask.run

    def interrupted(self: CellTask) -> Any:
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(self.key)
        return original(self)

    monkeypatch.setattr(CellTask, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_suite(parse_config(cfg), out=out, progress=False)
    finished = sorted(p.name for p in (out / "cells").glob("*.json"))
    assert len(finished) == 5  # nothing finished is lost
    calls.clear()
    monkeypatch.setattr(CellTask, "run", lambda self: (calls.append(self.key), original(self))[1])
    resumed = run_suite(parse_config(cfg), out=out, progress=False)
    assert len(calls) == 3  # only the three unfinished cells ran
    fresh = run_suite(parse_config(cfg), out=tmp_path / "fresh", progress=False)

    def strip(r: dict[str, Any]) -> list[tuple[str, str]]:
        timeless = ({k: v for k, v in c["metrics"].items() if k != "seconds"} for c in r["cells"])
        return sorted((c["key"], json.dumps(m, sort_keys=True)) for c, m in zip(r["cells"], timeless, strict=True))

    assert strip(resumed) == strip(fresh)  # same seed: resumed equals uninterrupted
    # a changed method is recomputed, not reused
    cfg["methods"][0]["n"] = 16
    calls.clear()
    run_suite(parse_config(cfg), out=out, progress=False)
    assert sorted(calls) == sorted(
        [file_key("lenet-mnist", "none", "random(n=16)"), file_key("user", "none", "random(n=16)")]
    )


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda c: c["methods"].append({"kind": "cw"}),
            r"unknown kind 'cw'; valid kinds: \['attacks', 'gradient-ascent'",
        ),
        (lambda c: c["defenses"].append({"kind": "jpeg"}), r"unknown kind 'jpeg'.*'bit-depth'"),
        (lambda c: c["methods"][0].update(steps=3), r"unknown key\(s\) \['steps'\]"),
        (lambda c: c.update(models=[]), r"\[\[models\]\] must be a non-empty array"),
        (lambda c: c["models"].append({"zoo": "resnet"}), "model must be one of"),
        (lambda c: c["models"][0].update(factory="x:y"), "exactly one of zoo"),
        (lambda c: c["models"][1].pop("num_classes"), "needs num_classes"),
        (lambda c: c["defenses"].append({"kind": "ensemble", "members": ["vgg"]}), "ensemble member 'vgg'"),
        (lambda c: c["methods"][0].update(models=["nobody"]), "unknown model 'nobody'"),
        (lambda c: c["methods"].append({"kind": "random", "n": 32}), "unique"),
        (lambda c: c.update(data={"dataset": "cifar"}), "data.dataset 'cifar' is unknown"),
        (lambda c: c.update(extra={}), r"unknown section\(s\) \['extra'\]"),
    ],
)
def test_bad_configs(user_module: None, tmp_path: Path, mutate: Any, match: str) -> None:
    cfg = small_suite()
    mutate(cfg)
    with pytest.raises(ConfigError, match=match):
        run_suite(parse_config(cfg), out=tmp_path, progress=False)


def test_bad_factories(user_module: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot import factory 'no_such_module:f'"):
        run_suite(parse_config(small_suite(factory="no_such_module:f")), out=tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"gives a bad model.*\(1, 10\).*got \(1, 13\)"):
        run_suite(parse_config(small_suite(factory="user_models:wrong_shape")), out=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="must look like 'package.module:function'"):
        run_suite(parse_config(small_suite(factory="user_models.tiny")), out=tmp_path, progress=False)


def test_malformed_toml_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[suite]\nname = "x"\n[[models]]\nzoo = lenet\n')
    with pytest.raises(ConfigError, match="line 4"):
        load_config(bad)
    assert main(["bench", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "line 4" in err and err.count("\n") == 1 and "Traceback" not in err
    assert main(["bench", "--suite", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "built-in suites" in capsys.readouterr().err
    assert main(["bench", "--out", str(tmp_path / "o")]) == 2


def test_builtin_suites_parse() -> None:
    quick = load_config("quick")
    assert quick.data["dataset"] == "mnist" and {m.name for m in quick.models} >= {"lenet-mnist"}
    paper = load_config("paper")
    assert {s.kind for s in paper.defenses} >= {"fooling-class", "uap-fine-tuning"}


def test_changed_defense_parameters_are_recomputed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = {
        "data": {"dataset": "mnist", "train": 100, "test": 100},
        "models": [{"zoo": "lenet-mnist"}],
        "defenses": [{"kind": "median", "name": "smooth", "size": 3}],
        "methods": [{"kind": "random", "n": 16}],
    }
    calls: list[str] = []
    original = CellTask.run
    monkeypatch.setattr(CellTask, "run", lambda self: (calls.append(self.key), original(self))[1])
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 1  # unchanged: reused
    cfg["defenses"][0]["size"] = 5  # same name, other parameters: not the same cell
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 2


def test_a_new_revision_of_a_method_kind_recomputes_its_finished_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kind whose behaviour changed (a higher revision) is run again; revision 1 keeps earlier cells."""
    from foolbench.bench import METHODS

    cfg = {
        "data": {"dataset": "mnist", "train": 100, "test": 100},
        "models": [{"zoo": "lenet-mnist"}],
        "methods": [{"kind": "random", "n": 16}],
    }
    calls: list[str] = []
    original = CellTask.run
    monkeypatch.setattr(CellTask, "run", lambda self: (calls.append(self.key), original(self))[1])
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    first = json.loads(next((tmp_path / "cells").glob("*.json")).read_text())["digest"]
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 1  # revision 1, unchanged: reused
    monkeypatch.setattr(METHODS["random"], "revision", classmethod(lambda cls, params: 2))
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 2  # the kind's behaviour changed: the stored cell is not reused
    assert json.loads(next((tmp_path / "cells").glob("*.json")).read_text())["digest"] != first
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 2  # and the new cell is reused in turn


def test_map_elites_cells_with_a_non_default_target_are_of_revision_2() -> None:
    """Their parents changed after 0.1.0 (below the target, not below 0.9999): older cells are not reused."""
    from foolbench.bench import METHODS
    from foolbench.bench._config import Spec
    from foolbench.bench._suite import _revision

    revision = METHODS["map-elites"].revision
    defaults = METHODS["map-elites"].Params().as_dict()
    # revision 1 adds nothing to the digest: cells stored before revisions existed keep theirs
    assert _revision(Spec("e", "map-elites", defaults, None)) == []
    assert _revision(Spec("e", "map-elites", {**defaults, "target_confidence": 0.99}, None)) == [2]
    assert revision({"target_confidence": 0.9999, "parents": "unmet-first"}) == 1
    assert revision({"target_confidence": 0.99, "parents": "unmet-first"}) == 2
    assert revision({"target_confidence": 0.99, "parents": "weakest"}) == 2
    assert revision({"target_confidence": 0.99, "parents": "uniform"}) == 1  # uniform has no level
    assert METHODS["random-search"].revision({"target_confidence": 0.99}) == 1


def test_cells_whose_results_changed_this_release_move_to_new_revisions() -> None:
    """A polished search now scores its last step and an unsorted PGD eps list keeps its largest eps's images:
    cells stored before had the same digests and were reused with the old results."""
    from foolbench.bench import METHODS

    revision = METHODS["map-elites"].revision
    old = {1, 2, 3}  # every revision a map-elites cell could have had
    assert revision({"polish_every": 200}) not in old
    assert revision({"polish_every": 200, "target_confidence": 0.99}) not in old | {revision({"polish_every": 200})}
    assert revision({"polish_every": None}) == 1
    assert METHODS["pgd"].revision({"eps": [0.3, 0.1]}) == 3
    assert METHODS["pgd"].revision({"eps": [0.1, 0.3]}) == METHODS["pgd"].revision({"eps": 0.3}) == 2


def test_a_user_kind_with_its_own_kind_of_classes_is_not_checked_as_indices() -> None:
    """The plan-time check took any ``classes`` parameter for a list of indices: a user kind whose classes
    are names, or a count, crashed the suite with a TypeError."""
    from foolbench.bench._registry import Method

    class Named(Method):  # type: ignore[type-arg]
        kind = "named"

        def run(self, target: Any, ctx: Any) -> Any:
            raise NotImplementedError

    for classes in (["cat", "dog"], 5, None):
        assert Named(type("P", (), {"classes": classes})()).check(10) is None
    assert "twice" in str(Named(type("P", (), {"classes": [1, 1]})()).check(10))


def test_near_confidence_reaches_the_search_and_keeps_earlier_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parameters added later (``late``) leave the digest of cells at their defaults as it was before them."""
    from foolbench.bench import METHODS
    from foolbench.search import MAPElites

    late = (
        "near_confidence",
        "near_strength",
        "near_refine",
        "islands",
        "polish_every",
        "polish_steps",
        "polish_lr",
        "polish_above",
        "polish_from",
    )
    params = METHODS["map-elites"].Params
    defaults = params().as_dict()
    assert params.identity(defaults) == {k: v for k, v in defaults.items() if k not in late}
    assert params.identity({**defaults, "near_confidence": 0.9})["near_confidence"] == 0.9
    cfg: dict[str, Any] = {
        "data": {"dataset": "mnist", "train": 100, "test": 100},
        "models": [{"zoo": "lenet-mnist"}],
        "methods": [{"kind": "map-elites", "name": "e", "max_evaluations": 48, "batch_size": 16, "classes": [3]}],
    }
    seen: list[dict[str, Any]] = []
    original = MAPElites.__init__

    def spy(self: MAPElites, *args: Any, **kw: Any) -> None:
        seen.append(kw)
        original(self, *args, **kw)

    monkeypatch.setattr(MAPElites, "__init__", spy)
    full = params.as_dict
    # the cell as a version without the late parameters stored it
    monkeypatch.setattr(params, "as_dict", lambda self: {k: v for k, v in full(self).items() if k not in late})
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    monkeypatch.setattr(params, "as_dict", full)
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(seen) == 1  # reused
    assert not isinstance(seen[0]["mutation_schedule"], fb.search.NearStrength)
    cfg["methods"][0].update(near_confidence=0.5, near_strength=0.25)
    run_suite(parse_config(cfg), out=tmp_path, progress=False)  # another setting: not the stored cell
    assert len(seen) == 2
    sched = seen[1]["mutation_schedule"]
    assert isinstance(sched, fb.search.NearStrength)
    assert (sched.near_confidence, sched.near_strength, sched(1)) == (0.5, 0.25, 1.0)
    assert seen[1]["polish"] is None
    cfg["methods"][0].update(encoding="cppn", near_strength=1.0, near_refine=0.05)
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    sched = seen[2]["mutation_schedule"]
    assert isinstance(sched, fb.search.NearStrength) and (sched.near_confidence, sched.refine) == (0.5, 0.05)
    assert seen[2]["islands"] == 1
    cfg["methods"][0].update(islands=2)
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(seen) == 4 and seen[3]["islands"] == 2


def test_polish_reaches_the_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from foolbench.search import MAPElites

    searches: list[MAPElites] = []
    original = MAPElites.__init__

    def spy(self: MAPElites, *args: Any, **kw: Any) -> None:
        searches.append(self)
        original(self, *args, **kw)

    monkeypatch.setattr(MAPElites, "__init__", spy)
    method = {
        "kind": "map-elites", "name": "e", "encoding": "cppn", "max_evaluations": 96, "batch_size": 16,
        "classes": [3, 8], "polish_every": 100, "polish_steps": 2, "polish_lr": 0.05, "polish_above": 0.0,
        "polish_from": 0.5,
    }  # fmt: skip
    cfg: dict[str, Any] = {
        "data": {"dataset": "mnist", "train": 100, "test": 100},
        "models": [{"zoo": "lenet-mnist"}],
        "methods": [method],
    }
    res = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert not res["failed"] and len(searches) == 1
    polish = searches[0].polish
    assert polish is not None
    assert (polish.every, polish.steps, polish.lr, polish.above, polish.below) == (100, 2, 0.05, 0.0, 0.9999)
    assert polish.from_evaluations == 48  # half of the budget: generations 3-5 (from 48 evaluations) polish
    # 2 classes below the target, 2 steps each: both in generation 3, then those replaced since
    assert 4 <= searches[0].gradient_images <= 3 * 2 * 2 and searches[0].gradient_images % 2 == 0
    # with a warm-up the share still counts from the start of the budget: 72 of 96, the warm-up's 48 done
    method.update(warmup=0.5, polish_from=0.75)
    searches.clear()
    res = run_suite(parse_config(cfg), out=tmp_path / "warm", progress=False)
    assert not res["failed"] and len(searches) == 2 and searches[0].polish is None
    assert searches[1].polish is not None and searches[1].polish.from_evaluations == 72 - 48


def test_every_builtin_kind_runs(tmp_path: Path) -> None:
    from foolbench.bench import DEFENSES, METHODS

    cfg = {
        "data": {"dataset": "mnist", "train": 96, "test": 48},
        "models": [
            {"zoo": "lenet-mnist"},
            {"name": "mlp", "factory": "foolbench.bench.factories:mlp", "input_shape": [1, 28, 28],
             "num_classes": 10, "train_epochs": 1},
        ],
        "defenses": [
            {"kind": "none"}, {"kind": "gaussian"}, {"kind": "median"}, {"kind": "bit-depth", "bits": 4},
            {"kind": "ensemble", "members": ["lenet-mnist", "mlp"]}, {"kind": "feature-squeezing"},
            {"kind": "fooling-class", "searches_per_round": 1, "max_evaluations": 64, "epochs": 1,
             "models": ["lenet-mnist"]},
            {"kind": "uap-fine-tuning", "rounds": 1, "epochs": 1, "fit": 32, "max_passes": 1, "models": ["mlp"]},
        ],
        "methods": [
            {"kind": "random", "n": 4}, {"kind": "pgd", "eps": 0.2, "n": 8, "steps": 2},
            {"kind": "map-elites", "max_evaluations": 64, "classes": [3], "encoding": "cppn", "models": ["mlp"]},
            {"kind": "random-search", "max_evaluations": 64, "batch_size": 32, "classes": [3, 5],
             "models": ["lenet-mnist"]},
            {"kind": "gradient-ascent", "steps": 2, "classes": [1], "models": ["lenet-mnist"]},
            {"kind": "uap", "fit": 16, "held_out": 16, "max_passes": 1, "models": ["lenet-mnist"]},
            {"kind": "attacks", "n": 8, "pgd_steps": 2, "square_queries": 8, "models": ["lenet-mnist"]},
        ],
    }  # fmt: skip
    assert {d["kind"] for d in cfg["defenses"]} == set(DEFENSES) and {m["kind"] for m in cfg["methods"]} == set(METHODS)
    res = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert not res["failed"]
    assert {(c["defense_kind"], c["method_kind"]) for c in res["cells"]} >= {(d, "pgd") for d in DEFENSES}
    by = {(c["model"], c["defense"]): c for c in res["clean"]}
    assert "threshold" in by[("lenet-mnist", "feature-squeezing")]
    fooling = next(t for t in res["defense_tables"] if t["defense"].startswith("fooling-class"))
    assert [r["round"] for r in fooling["rows"]] == [0, 1]
    pgd = {(c["model"], c["defense"]): c["metrics"] for c in res["cells"] if c["method_kind"] == "pgd"}
    assert "detection_rate" in pgd[("lenet-mnist", "feature-squeezing")]
    sampled = [c["metrics"] for c in res["cells"] if c["method_kind"] == "random-search"]
    assert sampled and all(m["evaluations"] == 64 and m["class_indices"] == [3, 5] for m in sampled)
    # PGD at eps 0.2 lowers the undefended LeNet's accuracy on these digits
    assert pgd[("lenet-mnist", "none")]["robust_accuracy"]["0.2"] < pgd[("lenet-mnist", "none")]["clean_accuracy"]


def test_a_second_writer_into_the_same_out_folder_is_refused(tmp_path: Path) -> None:
    from foolbench import _io
    from foolbench.errors import InvalidArgumentError

    with _io.locked_folder(tmp_path), pytest.raises(_io.FolderBusyError, match="in use by another foolbench run"):
        run_suite("quick", out=tmp_path, progress=False)
    assert not (tmp_path / "results.json").exists()
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(InvalidArgumentError, match="must be a folder"):
        run_suite("quick", out=tmp_path / "a-file" / "out", progress=False)


def test_attacks_kind_reports_the_worst_case_over_a_gradient_and_a_gradient_free_attack(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "suite": {"seed": 0},
            "data": {"dataset": "mnist", "train": 100, "test": 60},
            "models": [{"zoo": "lenet-mnist"}],
            "defenses": [{"kind": "none"}, {"kind": "bit-depth", "bits": 1}],
            "methods": [{"kind": "attacks", "eps": 0.3, "n": 40, "pgd_steps": 10, "square_queries": 100}],
        }
    )
    res = run_suite(cfg, out=tmp_path, progress=False)
    by = {c["defense"]: c["metrics"] for c in res["cells"]}
    for m in by.values():
        assert m["robust_worst_case"] <= min(m["robust_pgd"], m["robust_square"]) <= m["clean_accuracy"]
    assert by["none"]["robust_worst_case"] < 0.2  # an undefended LeNet falls to eps 0.3
    report = (tmp_path / "report.md").read_text()
    assert "| model | defense | eps | clean | PGD | Square | worst case |" in report


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys of the cells that run (rather than being reused) from now on."""
    calls: list[str] = []
    original = CellTask.run
    monkeypatch.setattr(CellTask, "run", lambda self: (calls.append(self.key), original(self))[1])
    return calls


def test_a_changed_ensemble_member_recomputes_the_ensemble_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg: dict[str, Any] = {
        "data": {"dataset": "mnist", "train": 100, "test": 100},
        "models": [
            {"zoo": "lenet-mnist"},
            {"name": "m", "factory": "foolbench.bench.factories:mlp", "input_shape": [1, 28, 28], "num_classes": 10},
        ],
        "defenses": [{"kind": "ensemble", "members": ["lenet-mnist", "m"], "models": ["lenet-mnist"]}],
        "methods": [{"kind": "random", "n": 16}],
    }
    calls = _counting(monkeypatch)
    first = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 1
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 1  # nothing changed: reused
    cfg["models"][1]["train_epochs"] = 1  # the other member changes; the defended model does not
    second = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 2, "the ensemble's cell was reused after one of its members changed"
    assert first["cells"][0]["digest"] != second["cells"][0]["digest"]


def test_an_ensemble_of_one_model_is_refused_naming_its_members(tmp_path: Path) -> None:
    cfg = {
        "data": {"dataset": "mnist", "train": 100, "test": 100},
        "models": [{"zoo": "lenet-mnist"}],
        "defenses": [{"kind": "ensemble", "members": ["lenet-mnist"]}],
        "methods": [{"kind": "random", "n": 16}],
    }
    with pytest.raises(ConfigError, match=r"ensemble of 'lenet-mnist': members = \['lenet-mnist'\] names no other"):
        run_suite(parse_config(cfg), out=tmp_path, progress=False)


def test_a_cell_edited_by_hand_is_recomputed_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = {
        "data": {"dataset": "mnist", "train": 100, "test": 100},
        "models": [{"zoo": "lenet-mnist"}],
        "methods": [{"kind": "random", "n": 16}],
    }
    calls = _counting(monkeypatch)
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    path = next((tmp_path / "cells").glob("*.json"))
    cell = json.loads(path.read_text())
    true_value = cell["metrics"]["direct_median_confidence"]
    cell["metrics"]["direct_median_confidence"] = 0.5  # in range, so only the checksum tells
    path.write_text(json.dumps(cell))
    with pytest.warns(UserWarning, match="was edited or damaged"):
        again = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 2
    assert again["cells"][0]["metrics"]["direct_median_confidence"] == true_value
    legacy = json.loads(path.read_text())
    del legacy["checksum"]  # a cell written by foolbench 0.1.0 has none: still reused
    path.write_text(json.dumps(legacy))
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 2


def test_cells_of_another_device_type_have_another_digest(tmp_path: Path) -> None:
    """CPU cells are not reused by ``--device cuda`` (other random streams); CPU digests are as before."""
    from foolbench.bench._suite import _Driver
    from foolbench.bench._workspace import Workspace

    cfg = parse_config(
        {
            "data": {"dataset": "mnist", "train": 100, "test": 100},
            "models": [{"zoo": "lenet-mnist"}],
            "methods": [{"kind": "random", "n": 16}],
        }
    )
    ws = Workspace(cfg, tmp_path, None)

    def cell_digest(device: str | None) -> str:
        return _Driver(cfg, tmp_path, ws, device, False).task("lenet-mnist", cfg.defenses[0], cfg.methods[0]).digest

    stored = run_suite(cfg, out=tmp_path / "run", progress=False)["cells"][0]["digest"]
    assert cell_digest(None) == cell_digest("cpu") == stored
    assert cell_digest("cuda") == cell_digest("cuda:1") != stored


def test_a_cells_tensors_file_is_tied_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .pt beside a cell is loaded only if it is the one the cell was written with; a cell that keeps no
    tensors removes an earlier configuration's (more classes than KEEP_IMAGES_LIMIT: the diversity rows then
    read another run's images, or fail on their count)."""
    import foolbench.bench._methods as methods
    from foolbench.bench._suite import _Driver
    from foolbench.bench._workspace import Workspace

    cfg: dict[str, Any] = {
        "data": {"dataset": "mnist", "train": 100, "test": 100},
        "models": [{"zoo": "lenet-mnist"}],
        "methods": [{"name": "me", "kind": "map-elites", "max_evaluations": 32, "batch_size": 16, "classes": [1, 7]}],
    }  # a named method: the cell's file names stay when its settings change
    calls = _counting(monkeypatch)
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    pt = next((tmp_path / "cells").glob("*.pt"))
    kept = torch.load(pt, weights_only=True)["images"]
    assert kept.shape[0] == 2
    torch.save({"images": torch.zeros(3, 1, 28, 28)}, pt)  # another run's tensors in its place
    with pytest.warns(UserWarning, match="tensors file .* is not the one it was written with"):
        run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 2
    assert torch.equal(torch.load(pt, weights_only=True)["images"], kept)  # same seed, same elites
    torch.save({"images": 1}, pt)  # not tensors: crashed the whole suite in the digest
    with pytest.warns(UserWarning, match="holds something other than tensors"):
        run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 3

    monkeypatch.setattr(methods, "KEEP_IMAGES_LIMIT", 1)  # the cell now keeps no tensors
    cfg["methods"][0]["max_evaluations"] = 48
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 4 and not list((tmp_path / "cells").glob("*.pt"))
    torch.save({"images": kept}, pt)  # a stray file beside a cell that kept none is not taken as its own
    parsed = parse_config(cfg)
    driver = _Driver(parsed, tmp_path, Workspace(parsed, tmp_path, None), None, False)
    task = driver.task("lenet-mnist", parsed.defenses[0], parsed.methods[0])
    assert driver.cached(task) and driver.tensors[task.key] == {}


def test_transfer_matrices_are_per_method_and_their_diagonal_is_the_cells_rate(tmp_path: Path) -> None:
    """Two PGD methods got one matrix whose rows mixed them; a UAP's diagonal was measured on the whole
    test split rather than on the cell's ``held_out`` digits."""
    cfg = {
        "data": {"dataset": "mnist", "train": 96, "test": 60},
        "models": [
            {"zoo": "lenet-mnist"},
            {"name": "mlp", "factory": "foolbench.bench.factories:mlp", "input_shape": [1, 28, 28],
             "num_classes": 10, "train_epochs": 1},
        ],
        "methods": [
            {"name": "pgd-weak", "kind": "pgd", "eps": 0.05, "n": 16, "steps": 2},
            {"name": "pgd-strong", "kind": "pgd", "eps": 0.3, "n": 16, "steps": 5},
            {"kind": "uap", "fit": 16, "held_out": 20, "max_passes": 1},
        ],
    }  # fmt: skip
    res = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert set(res["transfer"]) == {"pgd-weak", "pgd-strong", "uap"}
    weak, strong = res["transfer"]["pgd-weak"], res["transfer"]["pgd-strong"]
    assert weak["kind"] == strong["kind"] == "pgd" and "pgd-weak" in weak["title"]
    assert res["transfer"]["uap"]["method"] != "uap"  # the only UAP method: keyed by its kind
    # each matrix one budget, measured on its source's successes alone: on its own model each transfers fully
    for tr in (weak, strong):
        assert all(tr["matrix"][i][i] in (1.0, None) for i in range(2))
    assert weak["matrix"] != strong["matrix"]
    uap = res["transfer"]["uap"]
    rates = {c["model"]: c["metrics"]["fooling_rate"] for c in res["cells"] if c["method_kind"] == "uap"}
    for i, model in enumerate(uap["models"]):
        assert uap["matrix"][i][i] == pytest.approx(rates[model])
    claim = next(c for c in res["claims"] if "for one network often fails" in c["claim"])
    assert "mean" in claim["measured"]


def test_pgd_transfer_is_measured_on_the_images_that_fooled_their_source() -> None:
    """The PGD matrix counted every attacked image, also those its source still read right (or read wrong
    before the attack): its diagonal was the source's error rate, not 1, and its rows mixed failures in."""
    from foolbench.bench._registry import METHODS

    clf = fb.models.lenet_mnist()
    x, y = fb.data.mnist_digits(split="test", limit=40)
    i = torch.arange(40)
    y = torch.where(i % 2 == 1, (y + 1) % 10, y)  # half the labels wrong: those read as misclassified
    pred = clf.predict(x)
    fooled = i % 4 == 1  # stands in for the source's successes: all among the wrong labels
    rate = METHODS["pgd"].transfer_rate(clf, {"adversarial": x, "labels": y, "fooled": fooled}, x)
    assert rate == pytest.approx(float((pred[fooled] != y[fooled]).double().mean()))
    assert rate != pytest.approx(float((pred != y).double().mean()))
    none = torch.zeros(40, dtype=torch.bool)
    assert METHODS["pgd"].transfer_rate(clf, {"adversarial": x, "labels": y, "fooled": none}, x) is None


def test_runs_over_too_many_classes_to_keep_say_why_no_diversity_is_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import foolbench.bench._methods as methods

    monkeypatch.setattr(methods, "KEEP_IMAGES_LIMIT", 1)  # stands in for a 1,000-class search
    cfg = {
        "data": {"dataset": "mnist", "train": 100, "test": 100},
        "models": [{"zoo": "lenet-mnist"}],
        "methods": [{"name": "me", "kind": "map-elites", "max_evaluations": 32, "batch_size": 16,
                     "classes": [1, 7], "runs": 2}],
    }  # fmt: skip
    with pytest.warns(UserWarning, match=r"no diversity measured for \['me'\]: their cells keep no elites"):
        res = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert res["diversity"] == []


def test_a_cells_image_grid_is_tied_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The grid is written before the cell file: a run of other settings killed in between left its grid under
    the cell's name, and the finished cell of the first settings then showed it in the report."""
    cfg: dict[str, Any] = {
        "data": {"dataset": "mnist", "train": 100, "test": 100},
        "models": [{"zoo": "lenet-mnist"}],
        "methods": [{"name": "me", "kind": "map-elites", "max_evaluations": 32, "batch_size": 16, "classes": [1, 7]}],
    }
    calls = _counting(monkeypatch)
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    (grid,) = (tmp_path / "images").glob("*.png")
    kept = grid.read_bytes()
    grid.write_bytes(kept[:-7] + b"another")  # another configuration's grid in its place
    with pytest.warns(UserWarning, match="its file 'images/.*png' is not the one it was written with"):
        run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 2 and grid.read_bytes() == kept  # recomputed: same seed, same grid
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 2  # an intact cell stays cached
    grid.unlink()
    with pytest.warns(UserWarning, match="is missing or unreadable"):
        run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 3 and grid.read_bytes() == kept


def test_a_warm_up_counts_in_the_cells_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm-up's evaluations were counted in the cell but not its time, and max_seconds bounded only the
    search after it."""
    seen: list[tuple[float, float | None]] = []
    run = fb.search.MAPElites.run

    def timed(self: fb.search.MAPElites, *args: Any, **kwargs: Any) -> Any:
        out = run(self, *args, **kwargs)
        seen.append((self.seconds, kwargs.get("max_seconds")))
        return out

    monkeypatch.setattr(fb.search.MAPElites, "run", timed)
    method = {"kind": "map-elites", "classes": [1, 7], "warmup": 0.5, "max_evaluations": 64, "batch_size": 16}
    cfg = {"data": {"dataset": "mnist", "train": 64, "test": 64}, "models": [{"zoo": "lenet-mnist"}]}
    res = run_suite(parse_config({**cfg, "methods": [{**method, "max_seconds": 1000.0}]}), out=tmp_path, progress=False)
    (cell,) = res["cells"]
    (warm, warm_limit), (main_seconds, main_limit) = seen
    assert cell["metrics"]["seconds"] == round(warm + main_seconds, 2) and warm > 0
    assert warm_limit == 1000.0 and main_limit == pytest.approx(1000.0 - warm)


def test_pgd_keeps_the_images_of_its_largest_eps_whatever_the_order(tmp_path: Path) -> None:
    """With eps = [0.3, 0.05] the cell kept the images of the last eps, 0.05, for its detection rate and
    transfer matrix, and the report's "largest eps" plot took that last one too."""
    cfg = {
        "data": {"dataset": "mnist", "train": 96, "test": 20},
        "models": [{"zoo": "lenet-mnist"}],
        "methods": [{"kind": "pgd", "eps": [0.3, 0.05], "n": 8, "steps": 2}],
    }
    res = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert list(res["cells"][0]["metrics"]["robust_accuracy"]) == ["0.05", "0.3"]
    kept = torch.load(next((tmp_path / "cells").glob("*.pt")), weights_only=True)
    x = fb.data.mnist_digits("test", limit=8)[0]
    assert float((kept["adversarial"] - x).abs().max()) > 0.1  # eps 0.3's, not 0.05's


def test_an_interrupted_run_leaves_no_report_of_an_earlier_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run interrupted after its first cell left the earlier run's results.json and report.md (its seed, its
    metrics) beside the new cells: the folder showed reports that did not match its cells."""
    cfg: dict[str, Any] = {
        "suite": {"name": "s", "seed": 0},
        "data": {"dataset": "mnist", "train": 64, "test": 64},
        "models": [{"zoo": "lenet-mnist"}],
        "methods": [{"kind": "random", "n": 8}, {"kind": "random", "n": 16}],
    }
    run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert (tmp_path / "results.json").is_file() and (tmp_path / "report.md").is_file()
    stale_plot = tmp_path / "plots" / "robust_accuracy_vs_eps.png"  # a plot of the earlier run's results
    stale_plot.parent.mkdir(exist_ok=True)
    stale_plot.write_bytes(b"earlier")
    calls: list[str] = []
    original = CellTask.run

    def interrupted(self: CellTask) -> Any:
        if calls:
            raise KeyboardInterrupt
        calls.append(self.key)
        return original(self)

    monkeypatch.setattr(CellTask, "run", interrupted)
    cfg["suite"]["seed"] = 1
    with pytest.raises(KeyboardInterrupt):
        run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(calls) == 1  # one cell of seed 1 was written
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "report.md").exists()
    assert not stale_plot.exists()
    monkeypatch.setattr(CellTask, "run", original)
    res = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert json.loads((tmp_path / "results.json").read_text())["seed"] == res["seed"] == 1
    assert "seed 1," in (tmp_path / "report.md").read_text()


def test_an_edited_factory_architecture_is_a_new_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A factory's ReLU edited to a Sigmoid has the same weights: its cells and trained weights were reused."""
    import sys

    from foolbench.bench._store import tensors_digest
    from foolbench.bench._suite import _Driver
    from foolbench.bench._workspace import Workspace

    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    monkeypatch.syspath_prepend(str(pkg))
    cfg = parse_config(
        {
            "data": {"dataset": "mnist", "train": 64, "test": 32},
            "models": [
                {"zoo": "lenet-mnist"},
                {
                    "name": "m",
                    "factory": "edited_arch:net",
                    "input_shape": [1, 28, 28],
                    "num_classes": 10,
                    "train_epochs": 1,
                },
            ],
            "methods": [{"kind": "random", "n": 8}],
        }
    )
    out = tmp_path / "out"

    def build(activation: str) -> tuple[str, str, str]:
        (pkg / "edited_arch.py").write_text(
            "from torch import nn\n\ndef net(num_classes):\n"
            f"    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.{activation}(), nn.Linear(32, num_classes))\n"
        )
        sys.modules.pop("edited_arch", None)
        ws = Workspace(cfg, out, None)
        driver = _Driver(cfg, out, ws, None, False)
        m, lenet = (driver.task(name, cfg.defenses[0], cfg.methods[0]).digest for name in ("m", "lenet-mnist"))
        return m, lenet, ws.model("lenet-mnist").identity

    relu, sigmoid = build("ReLU"), build("Sigmoid")
    assert relu[0] != sigmoid[0], "the edited architecture kept the cells of the old one"
    assert len(list((out / "models").glob("m-*.pt"))) == 2, "the trained weights of the old architecture were reused"
    # a zoo model's identity is its weights' digest, as before
    assert relu[1:] == sigmoid[1:] and relu[2] == tensors_digest(fb.models.lenet_mnist().module.state_dict())


def test_the_suites_data_settings_leave_the_cells_of_a_model_with_its_own_data(tmp_path: Path) -> None:
    """Another [data] dataset recomputes the cells on the suite's data, not those of a model with its own."""
    import numpy as np

    from foolbench.bench._suite import _Driver
    from foolbench.bench._workspace import Workspace

    gen = np.random.default_rng(0)
    for name, n in (("a.npz", 20), ("b.npz", 30)):
        x, y = gen.random((n, 1, 28, 28), dtype=np.float32), np.arange(n) % 10
        np.savez(tmp_path / name, x_train=x, y_train=y, x_test=x, y_test=y)

    def digests(dataset: str) -> dict[str, str]:
        cfg = parse_config(
            {
                "data": {"dataset": dataset},
                "models": [
                    {"zoo": "lenet-mnist", "dataset": "mnist"},
                    {
                        "name": "m",
                        "factory": "foolbench.bench.factories:mlp",
                        "input_shape": [1, 28, 28],
                        "num_classes": 10,
                    },
                ],
                "methods": [{"kind": "random", "n": 8}],
            },
            folder=tmp_path,
        )
        driver = _Driver(cfg, tmp_path, Workspace(cfg, tmp_path, None), None, False)
        return {m.name: driver.task(m.name, cfg.defenses[0], cfg.methods[0]).digest for m in cfg.models}

    a, b = digests("a.npz"), digests("b.npz")
    assert a["m"] != b["m"]  # on the suite's data: recomputed
    assert a["lenet-mnist"] == b["lenet-mnist"], "a model on its own dataset was recomputed for the suite's data"


def test_cells_of_fixed_attacks_move_to_new_revisions() -> None:
    """PGD L2 images moved back inside the ball, gradient ascent's found_at and history, DeepFool's nudge:
    cells stored before had the same digests and would have been reused with the old results."""
    from foolbench.bench import METHODS

    pgd = METHODS["pgd"].revision
    assert pgd({"eps": 0.3, "norm": "inf"}) == pgd({"eps": 0.3}) == 2  # L-inf: unchanged
    assert pgd({"eps": 1.0, "norm": "2"}) not in {2, 3}
    assert pgd({"eps": [3.0, 1.0], "norm": "2"}) not in {2, 3, pgd({"eps": 1.0, "norm": "2"})}
    assert METHODS["gradient-ascent"].revision({}) not in {1, 2}
    assert METHODS["uap"].revision({"method": "deepfool"}) != 1  # DeepFool's nudge moved
    assert METHODS["uap"].revision({"method": "sgd"}) == METHODS["uap"].revision({}) == 1


def test_squeezer_defense_cells_whose_inputs_are_now_clamped_move_to_revision_2() -> None:
    """The squeezed images are clamped to the bounds: a float32 blur ending a rounding error above them
    now gives other numbers, so Gaussian cells (and median / bit-depth ones off [0, 1] bounds) are run again."""
    from foolbench.bench import DEFENSES
    from foolbench.bench._config import Spec
    from foolbench.bench._suite import _defense_revision

    unit, other = (0.0, 1.0), (-0.4242, 2.8215)
    assert DEFENSES["gaussian"].revision({"sigma": 1.0}, unit) == 2
    for kind, params in (("median", {"size": 3}), ("bit-depth", {"bits": 1})):
        assert DEFENSES[kind].revision(params, unit) == 1  # in-bounds inputs: the same numbers, the same cells
        assert DEFENSES[kind].revision(params, other) == 2
    for kind in ("none", "ensemble", "feature-squeezing", "fooling-class", "uap-fine-tuning"):
        assert DEFENSES[kind].revision({}, other) == 1
    lenet = type("M", (), {"classifier": fb.models.lenet_mnist()})()
    assert _defense_revision(Spec("g", "gaussian", {"sigma": 1.0}, None), lenet) == [2]
    assert _defense_revision(Spec("m", "median", {"size": 3}, None), lenet) == []  # digest as before


def test_cells_whose_stop_now_waits_for_float32_move_to_new_revisions() -> None:
    """At a reduced precision without verify the stop at the target read the fast scores: cells stored
    before had the same digests and would have been reused with the earlier stop."""
    from foolbench.bench import METHODS

    for kind in ("map-elites", "random-search"):
        revision = METHODS[kind].revision
        assert revision({"precision": "bf16"}) != revision({}) == revision({"precision": "fp32"})
        assert revision({"precision": "bf16", "verify": True}) == revision({})  # verified elites: as before
    assert METHODS["map-elites"].revision({"precision": "bf16", "polish_every": 200}) not in {11, 12, 13}


def test_trained_models_and_defense_checkpoints_are_keyed_by_device(tmp_path: Path) -> None:
    """Cells were keyed by device, but a CUDA run into a CPU run's folder loaded its trained and retrained
    weights (``models/`` and ``defenses/`` keys without the device): results depended on the folder's history."""
    from foolbench.bench._workspace import Workspace

    cfg = parse_config(
        {
            "data": {"dataset": "mnist", "train": 100, "test": 100},
            "models": [{"zoo": "lenet-mnist"}],
            "methods": [{"kind": "random", "n": 16}],
        }
    )
    cpu, default, cuda = (Workspace(cfg, tmp_path, d) for d in ("cpu", None, "cuda"))
    assert cpu._device_kind() == default._device_kind() == [] and cuda._device_kind() == ["cuda"]
    model = cpu.model("lenet-mnist")
    cuda.models["lenet-mnist"] = model  # the same model and data, built here on the CPU
    cuda.data_identity = cpu.data_identity  # type: ignore[method-assign]
    spec = cfg.defenses[0]
    assert cpu.defense_digest("lenet-mnist", spec) == default.defense_digest("lenet-mnist", spec)
    assert cuda.defense_digest("lenet-mnist", spec) != cpu.defense_digest("lenet-mnist", spec)
