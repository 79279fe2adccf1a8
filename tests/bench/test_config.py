"""Every suite key is validated at parse time, and the message names the TOML key as written."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

import foolbench as fb
from foolbench.bench import load_config, parse_config
from foolbench.defenses import FeatureSqueezingDetector, bit_depth, median
from foolbench.errors import ConfigError, InvalidArgumentError

BASE: dict[str, Any] = {
    "suite": {"name": "t", "seed": 0},
    "data": {"dataset": "mnist", "train": 100, "test": 50},
    "models": [
        {"zoo": "lenet-mnist"},
        {"name": "m", "factory": "foolbench.bench.factories:mlp", "input_shape": [1, 28, 28], "num_classes": 10},
    ],
    "defenses": [{"kind": "none"}, {"kind": "median"}],
    "methods": [{"kind": "pgd"}, {"kind": "uap"}, {"kind": "map-elites"}],
}

CASES: list[tuple[str, str, Any, str]] = [
    # (section path, key, value, expected message)
    ("methods.0", "n", -5, r"methods\[0\]\.n must be in \[1, \d+\], got -5"),
    ("methods.1", "fit", -90, r"methods\[1\]\.fit must be in \[1, \d+\], got -90"),
    ("methods.1", "held_out", 0, r"methods\[1\]\.held_out must be in \[1, \d+\], got 0"),
    ("suite", "seed", -1, r"suite\.seed must be in \[0, 9223372036854775807\], got -1"),
    ("suite", "seed", True, r"suite\.seed must be an integer, got True"),
    ("suite", "seed", 2**64, r"suite\.seed must be in \[0, 9223372036854775807\], got 18446744073709551616"),
    ("suite", "seed", 1.5, r"suite\.seed must be an integer, got 1\.5"),
    ("suite", "sed", 1, r"suite has unknown key\(s\) \['sed'\]; valid keys: \['name', 'seed'\]"),
    ("suite", "name", 3, r"suite\.name must be a string, got 3"),
    ("data", "trian", 5, r"data has unknown key\(s\) \['trian'\]"),
    ("data", "train", 0, r"data\.train must be in \[1, 4000\], got 0"),
    ("data", "test", "all", r"data\.test must be an integer, got 'all'"),
    ("data", "size", 64, r"data\.dataset 'mnist' takes no key\(s\) \['size'\]"),
    ("data", "dataset", "cifar", r"data\.dataset 'cifar' is unknown"),
    ("models.1", "train_epochs", 0.5, r"models\[1\]\.train_epochs must be an integer, got 0\.5"),
    ("models.1", "train_epochs", -1, r"models\[1\]\.train_epochs must be in \[0, 10000\], got -1"),
    ("models.1", "num_classes", 1, r"models\[1\]\.num_classes must be in \[2, "),
    ("models.1", "input_shape", [1, 28], r"models\[1\]\.input_shape must be \[C, H, W\], got \[1, 28\]"),
    ("models.1", "input_shape", [1, 0, 28], r"models\[1\]\.input_shape\[1\] must be in \[1, "),
    ("models.1", "bounds", [1.0, 0.0], r"models\[1\]\.bounds must be \[low, high\] with low < high"),
    ("models.1", "std", 0.0, r"models\[1\]\.std must be in \(0, inf\), got 0\.0"),
    ("models.1", "name", "", r"models\[1\]\.name must be a non-empty string"),
    ("models.1", "datset", "mnist", r"models\[1\] has unknown key\(s\) \['datset'\]"),
    ("models.0", "dataset", "cifar", r"models\[0\]\.dataset must be one of \['mnist', 'imagenet-photos'\]"),
    ("methods.0", "eps", [], r"methods\[0\]\.eps must be a number or a non-empty list of numbers"),
    ("methods.0", "eps", [0.1, "x"], r"methods\[0\]\.eps\[1\] must be a number, got 'x'"),
    ("methods.0", "eps", -0.1, r"methods\[0\]\.eps must be in \[0, inf\), got -0\.1"),
    ("methods.0", "norm", "1", r"methods\[0\]\.norm must be one of \['inf', '2'\], got '1'"),
    ("methods.0", "steps", 3.0, r"methods\[0\]\.steps must be an integer, got 3\.0"),
    ("methods.1", "eps", float("nan"), r"methods\[1\]\.eps must be finite, got nan"),
    ("methods.2", "encoding", "vqgan", r"methods\[2\]\.encoding must be one of \['direct', 'cppn'\]"),
    ("methods.2", "classes", [0, -1], r"methods\[2\]\.classes\[1\] must be in \[0, "),
    ("methods.2", "target_confidence", 1.5, r"methods\[2\]\.target_confidence must be in \(0, 1\], got 1\.5"),
    ("methods.2", "max_seconds", 0, r"methods\[2\]\.max_seconds must be in \(0, inf\), got 0"),
    ("methods.2", "models", "lenet-mnist", r"methods\[2\]\.models must be a list of model names"),
    # [] applied the method to no model: it vanished from the suite without a word
    ("methods.2", "models", [], r"methods\[2\]\.models must name at least one model \(leave the key out"),
    ("defenses.1", "models", [], r"defenses\[1\]\.models must name at least one model"),
    # an integer past float's range crashed with OverflowError in the finiteness check
    ("methods.1", "eps", 10**400, r"methods\[1\]\.eps must be a finite number, got an integer of 401 digits"),
    ("methods.2", "target_confidence", -(10**400), r"methods\[2\]\.target_confidence must be a finite number"),
    ("methods.2", "name", 7, r"methods\[2\]\.name must be a non-empty string, got 7"),
    ("defenses.1", "size", 0, r"defenses\[1\]\.size must be in \[3, 99\], got 0"),
    ("defenses.1", "kind", "jpeg", r"defenses\[1\] has unknown kind 'jpeg'; valid kinds: \['bit-depth'"),
    ("defenses.1", "sigma", 1.0, r"defenses\[1\] has unknown key\(s\) \['sigma'\]; valid keys: \['size'\]"),
    ("methods.2", "classes", [], r"methods\[2\]\.classes must be a non-empty list \(leave the key out"),
    ("models.0", "train_epochs", 50, r"models\[0\]: train_epochs do\(es\) not apply to a zoo model"),
    ("models.0", "num_classes", 7, r"models\[0\]: num_classes do\(es\) not apply to a zoo model"),
    ("models.1", "image_size", 64, r"models\[1\]: image_size do\(es\) not apply to a factory model"),
]


def mutate(path: str, key: str, value: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE)
    section, _, index = path.partition(".")
    table = cfg[section][int(index)] if index else cfg[section]
    table[key] = value
    return cfg


@pytest.mark.parametrize(("path", "key", "value", "match"), CASES, ids=[f"{p}.{k}={v!r}" for p, k, v, _ in CASES])
def test_every_key_is_validated_at_parse_time(path: str, key: str, value: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(mutate(path, key, value))


def test_a_whole_number_budget_is_the_same_float_alone_or_in_a_list() -> None:
    """eps = 1 stayed an int: its results were stored under "1" where eps = 1.0 or [1] stored "1.0", the
    report showed two columns, and equal work was recomputed (another digest)."""
    forms = [parse_config(mutate("methods.0", "eps", eps)).methods[0].params["eps"] for eps in (1, 1.0, [1], [1.0])]
    assert forms[0] == 1.0 and type(forms[0]) is float
    assert forms[2] == forms[3] == [1.0] and all(type(e) is float for e in forms[2])
    std = parse_config(mutate("models.1", "std", 1)).models[1].params["std"]
    assert type(std) is float


def test_the_base_suite_parses() -> None:
    cfg = parse_config(BASE)
    assert cfg.seed == 0 and cfg.methods[0].params["eps"] == [0.1, 0.2, 0.3] and cfg.data["train"] == 100


def test_a_toml_file_names_its_path_and_key(tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(
        '[suite]\nseed = 18446744073709551616\n[[models]]\nzoo = "lenet-mnist"\n[[methods]]\nkind = "random"\n'
    )
    with pytest.raises(ConfigError, match=rf"{suite}: suite\.seed must be in \[0, "):
        load_config(suite)
    suite.write_bytes(b"\xff\xfe[suite]\n")
    with pytest.raises(ConfigError, match="cannot read the suite file as UTF-8"):
        load_config(suite)


# settings that would change nothing in the entry they are given in: refused, naming the entry
COMBINATIONS: list[tuple[dict[str, Any], str]] = [
    ({"kind": "map-elites", "encoding": "cppn", "mutation_rate": 0.5}, "mutation_rate .*direct encoding only"),
    ({"kind": "map-elites", "decay_every": 10}, r"decay_every \(got 10\) needs a decay_factor below 1"),
    ({"kind": "map-elites", "verify": True}, "verify = true needs precision = 'bf16' or 'fp16'"),
    ({"kind": "random-search", "verify": True}, "random-search: verify = true needs precision"),
    ({"kind": "map-elites", "warmup": 0.25}, r"warmup \(got 0.25\) needs classes"),
    ({"kind": "map-elites", "near_strength": 2.0}, r"near_strength \(got 2\) needs near_confidence"),
    ({"kind": "map-elites", "near_confidence": 1.0, "near_strength": 0.5}, r"near_confidence must be in \(0, 1\)"),
    ({"kind": "map-elites", "near_confidence": 0.9}, r"near_strength equal to strength \(1\) changes nothing"),
    (
        {"kind": "map-elites", "encoding": "cppn", "near_refine": 0.02},
        r"near_refine \(got 0.02\) needs near_confidence",
    ),
    (
        {"kind": "map-elites", "encoding": "cppn", "near_confidence": 0.9, "near_strength": 0.5, "near_refine": 0.02},
        "give near_strength .* or near_refine .* not both",
    ),
    ({"kind": "map-elites", "near_confidence": 0.9, "near_refine": 0.02}, "near_refine .* needs encoding 'cppn'"),
    ({"kind": "map-elites", "polish_steps": 5}, r"polish_steps \(got 5\) needs polish_every"),
    ({"kind": "map-elites", "polish_from": 0.5}, r"polish_from \(got 0.5\) needs polish_every"),
    ({"kind": "map-elites", "polish_every": 10, "polish_from": 1.0}, "polish_from must be below 1"),
    (
        {"kind": "map-elites", "polish_every": 10, "target_confidence": 0.5},
        r"polish_above \(got 0.9\) must be below target_confidence \(0.5\)",
    ),
]


@pytest.mark.parametrize(("entry", "match"), COMBINATIONS, ids=[m.split(" ")[0] for _, m in COMBINATIONS])
def test_settings_that_would_change_nothing_are_refused(entry: dict[str, Any], match: str) -> None:
    cfg = copy.deepcopy(BASE)
    cfg["methods"] = [entry]
    with pytest.raises(ConfigError, match=r"<config>: methods\[0\]: .*" + match):
        parse_config(cfg)
    fixed = {k: v for k, v in entry.items() if k in ("kind", "encoding")}  # the same entry without the stray key
    assert parse_config({**cfg, "methods": [fixed]}).methods[0].kind == entry["kind"]


def test_more_islands_than_batch_size_are_refused_when_the_suite_is_read() -> None:
    """Every cell of such a method failed at run time (MAPElites refuses it); the file is refused instead."""
    cfg = copy.deepcopy(BASE)
    cfg["methods"] = [{"kind": "map-elites", "islands": 8, "batch_size": 4}]
    with pytest.raises(
        ConfigError, match=r"methods\[0\]: map-elites: islands \(got 8\) must be at most batch_size \(got 4\)"
    ):
        parse_config(cfg)
    cfg["methods"][0]["batch_size"] = 8  # as many islands as genomes per generation: each has one
    assert parse_config(cfg).methods[0].params["islands"] == 8


def test_an_ensemble_needs_members() -> None:
    cfg = copy.deepcopy(BASE)
    cfg["defenses"] = [{"kind": "ensemble"}]
    with pytest.raises(ConfigError, match=r"an ensemble needs members = \[\.\.\.\]"):
        parse_config(cfg)
    cfg["defenses"] = [{"kind": "ensemble", "members": []}]
    with pytest.raises(ConfigError, match=r"defenses\[0\]\.members must be a non-empty list"):
        parse_config(cfg)


# values the squeezers refuse: (entry, the message at parse time)
DEFENSE_LIMITS: list[tuple[dict[str, Any], str]] = [
    ({"kind": "bit-depth", "bits": 9}, r"defenses\[1\]\.bits must be in \[1, 8\], got 9"),
    ({"kind": "bit-depth", "bits": 16}, r"defenses\[1\]\.bits must be in \[1, 8\], got 16"),
    ({"kind": "median", "size": 1}, r"defenses\[1\]\.size must be in \[3, 99\], got 1"),
    ({"kind": "median", "size": 4}, r"defenses\[1\]: size must be odd \(a median window needs a centre pixel\), got 4"),
    ({"kind": "feature-squeezing", "bits": 12}, r"defenses\[1\]\.bits must be in \[1, 8\], got 12"),
    ({"kind": "feature-squeezing", "median": 1}, r"defenses\[1\]\.median must be in \[3, 99\], got 1"),
    ({"kind": "feature-squeezing", "median": 2}, r"defenses\[1\]\.median must be in \[3, 99\], got 2"),
    ({"kind": "feature-squeezing", "median": 4}, r"defenses\[1\]: median must be odd .*, got 4"),
    (
        {"kind": "feature-squeezing", "false_positive_rate": 1.0},
        r"defenses\[1\]: false_positive_rate must be in \(0, 1\)",
    ),
]


@pytest.mark.parametrize(("entry", "match"), DEFENSE_LIMITS, ids=[str(e) for e, _ in DEFENSE_LIMITS])
def test_defense_limits_are_those_of_the_defenses(
    lenet: fb.models.TorchClassifier, entry: dict[str, Any], match: str
) -> None:
    """bits up to 16, median windows of 1 or of an even size and a false-positive rate of 1 were accepted at
    parse time; the defenses refuse them (bits 1..8, odd windows >= 3, a rate in (0, 1)), so the suite
    failed mid-run instead."""
    cfg = copy.deepcopy(BASE)
    cfg["defenses"][1] = entry
    with pytest.raises(ConfigError, match=r"<config>: " + match):
        parse_config(cfg)
    ((key, value),) = ((k, v) for k, v in entry.items() if k != "kind")
    if key == "false_positive_rate":
        detector = FeatureSqueezingDetector(lenet, [bit_depth(1)])
        with pytest.raises(InvalidArgumentError, match="false_positive_rate"):  # the defense refuses it too
            detector.calibrate(torch.rand(4, 1, 28, 28), false_positive_rate=value)
        return
    squeezer = bit_depth if key == "bits" else median
    with pytest.raises(InvalidArgumentError):  # the defense refuses the same value
        squeezer(value)
    for edge in (1, 8) if key == "bits" else (3, 99):  # the limits themselves parse, and the defense takes them
        cfg["defenses"][1] = {**entry, key: edge}
        parse_config(cfg)
        squeezer(edge)


def test_gradient_ascent_l2_decay_is_below_one_at_parse_time() -> None:
    """l2_decay had no upper bound in the suite (GradientAscent takes [0, 1)): 5.0 parsed, then every cell
    failed after the others had run, exit status 1, naming no suite key."""
    cfg = copy.deepcopy(BASE)
    cfg["methods"] = [{"kind": "gradient-ascent", "l2_decay": 1.0}]
    with pytest.raises(ConfigError, match=r"methods\[0\]\.l2_decay must be in \[0, 1\), got 1\.0"):
        parse_config(cfg)
    cfg["methods"][0]["l2_decay"] = 0.5
    assert parse_config(cfg).methods[0].params["l2_decay"] == 0.5


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (
            {"classes": [1, 1]},
            r"methods 'map-elites\(.*\)' on model 'lenet-mnist': classes names a class twice: \[1, 1\]",
        ),
        ({"classes": [3, 10]}, r"on model 'lenet-mnist': classes must be below the model's 10 classes, got 10"),
        ({"classes": list(range(10)), "warmup": 0.5}, r"warmup needs classes to leave some of the model's classes"),
    ],
    ids=["twice", "too-large", "warmup-all"],
)
def test_method_classes_are_checked_against_each_model_before_any_cell_runs(
    entry: dict[str, Any], match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """classes = [1, 1], a class past the model's or a warm-up over every class parsed and ran: the first two
    failed in their cells after the others had run, and the warm-up was skipped without a word."""
    import foolbench.bench._methods as methods
    from foolbench.bench import run_suite

    ran: list[str] = []
    monkeypatch.setattr(methods.RandomMethod, "run", lambda self, target, ctx: ran.append("cell"))
    cfg = {
        "data": {"dataset": "mnist", "train": 100, "test": 50},
        "models": [{"zoo": "lenet-mnist"}],
        "methods": [{"kind": "random", "n": 8}, {"kind": "map-elites", "max_evaluations": 64, **entry}],
    }
    with pytest.raises(ConfigError, match=match):
        run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert ran == []
