from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from foolbench.bench import (
    BUILTIN_SUITES,
    DEFENSES,
    METHODS,
    CellOutput,
    Context,
    Defense,
    Method,
    Model,
    Params,
    Target,
    param,
    parse_config,
    register_defense,
    register_method,
    run_suite,
    unregister,
)
from foolbench.errors import ConfigError, InvalidArgumentError


@dataclass(frozen=True)
class MeanParams(Params):
    """Parameters of the test method."""

    n: int = param(8, "held-out images scored", type="int", lo=1)


class MeanConfidence(Method[MeanParams]):
    """Mean top confidence on held-out images."""

    kind = "mean-confidence"
    Params = MeanParams
    title = "Mean top confidence on held-out digits"
    rates = ("mean_confidence",)

    def run(self, target: Target, ctx: Context) -> CellOutput:
        x = ctx.test[0][: self.params.n]
        return CellOutput({"mean_confidence": float(target.classifier.probs(x).max(1).values.mean()), "n": len(x)})


@dataclass(frozen=True)
class NoiseParams(Params):
    """Parameters of the test defense."""

    scale: float = param(0.5, "scale of the logits", type="float", lo=0, lo_open=True)


class Flattened(Defense[NoiseParams]):
    """The model unchanged, with a table (to show a defense's report rows)."""

    kind = "flattened"
    Params = NoiseParams

    def build(self, model: Model, ctx: Context) -> Target:
        return Target(model.classifier, list(range(10)), table={"rows": [{"round": 0, "scale": self.params.scale}]})


def tiny(methods: list[dict[str, Any]], defenses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "data": {"dataset": "mnist", "train": 64, "test": 64},
        "models": [{"zoo": "lenet-mnist"}],
        "defenses": defenses or [{"kind": "none"}],
        "methods": methods,
    }


def test_a_custom_method_and_defense_added_in_a_test_run_and_report(tmp_path: Path) -> None:
    register_method(MeanConfidence)
    register_defense(Flattened)
    try:
        cfg = parse_config(tiny([{"kind": "mean-confidence", "n": 16}], [{"kind": "none"}, {"kind": "flattened"}]))
        res = run_suite(cfg, out=tmp_path, progress=False)
        assert not res["failed"]
        cells = {c["defense"]: c for c in res["cells"]}
        assert cells["none"]["method"] == "mean-confidence(n=16)" and cells["none"]["metrics"]["n"] == 16
        assert cells["none"]["metrics"]["mean_confidence"] > 0.8  # LeNet reads real digits confidently
        report = (tmp_path / "report.md").read_text()
        assert "## Mean top confidence on held-out digits" in report
        assert "| lenet-mnist | flattened | mean-confidence(n=16) |" in report
        assert "## Defense rounds: lenet-mnist / flattened" in report
        # parameters are validated at parse time, naming the TOML key
        with pytest.raises(ConfigError, match=r"methods\[0\]\.n must be in \[1, "):
            parse_config(tiny([{"kind": "mean-confidence", "n": 0}]))
    finally:
        unregister("mean-confidence")
        unregister("flattened")
    assert "mean-confidence" not in METHODS and "flattened" not in DEFENSES
    with pytest.raises(ConfigError, match="unknown kind 'mean-confidence'"):
        parse_config(tiny([{"kind": "mean-confidence"}]))


def test_registration_is_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="must subclass Method"):
        register_method(Flattened)
    with pytest.raises(InvalidArgumentError, match="already registered"):
        register_method(type("Other", (MeanConfidence,), {"kind": "pgd"}))
    with pytest.raises(InvalidArgumentError, match="Params must be a Params dataclass"):
        register_method(type("NoParams", (MeanConfidence,), {"kind": "x", "Params": dict}))


def test_a_params_field_not_made_with_param_is_refused_at_registration() -> None:
    """A plain field (``n: int = 8``) made parsing fail with KeyError('type') and broke the reference."""
    from foolbench.bench import json_schema, reference_markdown

    @dataclass(frozen=True)
    class PlainParams(Params):
        n: int = 8

    plain = type("Plain", (MeanConfidence,), {"kind": "plain", "Params": PlainParams})
    try:
        with pytest.raises(InvalidArgumentError, match=r"Plain\.Params field 'n' .* param\(default, doc, type="):
            register_method(plain)
        with pytest.raises(InvalidArgumentError, match="field 'n'"):
            register_defense(type("PlainDefense", (Flattened,), {"kind": "plain", "Params": PlainParams}))
    finally:
        unregister("plain")
    assert "plain" not in METHODS and "plain" not in DEFENSES
    assert "### `pgd`" in reference_markdown() and "pgd" in str(json_schema())


def test_every_builtin_kind_owns_documented_parameters() -> None:
    import dataclasses

    for registry in (METHODS, DEFENSES):
        for kind, cls in registry.items():
            assert cls.kind == kind
            defaults = cls.Params()
            for f in dataclasses.fields(cls.Params):
                assert f.metadata["doc"], (kind, f.name)
            # the defaults survive the TOML round trip (TOML has no null: None means "not written")
            written = {k: v for k, v in json.loads(json.dumps(defaults.as_dict())).items() if v is not None}
            assert cls.Params.from_toml(written, where=kind) == defaults


def test_reference_and_schema_cover_every_kind_and_key() -> None:
    import dataclasses
    import sys
    from importlib import resources

    from foolbench.bench import json_schema, reference_markdown

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    register_method(MeanConfidence)
    try:
        text = reference_markdown()
        schema = json_schema()
    finally:
        unregister("mean-confidence")
    for registry in (METHODS, DEFENSES):
        for kind, cls in registry.items():
            assert f"### `{kind}`" in text
            for f in dataclasses.fields(cls.Params):
                assert f"| `{f.name}` |" in text and f.metadata["doc"] in text
    assert "### `mean-confidence`" in text and "held-out images scored" in text  # registered kinds appear
    jsonschema = pytest.importorskip("jsonschema")
    for name in BUILTIN_SUITES:
        raw = tomllib.loads(resources.files("foolbench.bench").joinpath(f"suites/{name}.toml").read_text())
        jsonschema.validate(raw, schema)
    bad = {"models": [{"zoo": "lenet-mnist"}], "methods": [{"kind": "pgd", "n": -5}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**bad, "methods": [{"kind": "pgd", "stepz": 3}]}, schema)
    jsonschema.validate({**bad, "methods": [{"kind": "pgd", "n": 5, "eps": 0.1}]}, schema)


def test_the_schema_refuses_what_the_loader_refuses() -> None:
    """Empty lists and models with neither or both of zoo and factory passed the schema; the loader refuses them."""
    from foolbench.bench import json_schema

    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    zoo = {"zoo": "lenet-mnist"}
    factory = {"factory": "foolbench.bench.factories:mlp", "input_shape": [1, 28, 28], "num_classes": 10}
    good = {"models": [zoo, factory], "methods": [{"kind": "map-elites", "classes": [1]}]}
    jsonschema.validate(good, schema)
    parse_config(good)
    refused = [
        {**good, "methods": [{"kind": "map-elites", "classes": []}]},
        {**good, "methods": [{"kind": "random", "models": []}]},
        {**good, "defenses": [{"kind": "ensemble", "members": []}]},
        {**good, "models": [{"name": "nothing"}]},
        {**good, "models": [{**zoo, **factory}]},
        {**good, "models": [{**zoo, "num_classes": 10}]},
        {**good, "models": [{k: v for k, v in factory.items() if k != "num_classes"}]},
        {**good, "models": [{**factory, "input_shape": [28, 28]}]},
        {**good, "models": [{**factory, "bounds": [0.0]}]},
    ]
    for raw in refused:
        with pytest.raises(ConfigError):
            parse_config(raw)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(raw, schema)


class NaNMethod(MeanConfidence):
    kind = "nan-method"

    def run(self, target: Target, ctx: Context) -> CellOutput:
        return CellOutput({"mean_confidence": 1.5 if self.params.n == 2 else float("nan")})


@pytest.mark.parametrize(
    ("n", "problem"), [(1, "metrics.mean_confidence is nan"), (2, r"must be a fraction in \[0, 1\]")]
)
def test_bad_metrics_from_a_method_fail_the_cell_and_are_never_written(tmp_path: Path, n: int, problem: str) -> None:
    register_method(NaNMethod)
    try:
        res = run_suite(parse_config(tiny([{"kind": "nan-method", "n": n}])), out=tmp_path, progress=False)
    finally:
        unregister("nan-method")
    assert res["cells"] == [] and len(res["failed"]) == 1
    assert res["failed"][0]["error"].startswith("ValueError: the method returned bad metrics")
    assert re.search(problem, res["failed"][0]["error"])
    assert not list((tmp_path / "cells").glob("*.json")) if (tmp_path / "cells").exists() else True
    json.loads((tmp_path / "results.json").read_text())  # strict JSON: no NaN written


def test_the_command_line_exits_1_when_a_cell_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`foolbench bench` printed the failed cells only into report.md and exited 0: a script or CI saw success."""
    from foolbench.cli import main

    config = tmp_path / "suite.toml"
    config.write_text(
        '[data]\ndataset = "mnist"\ntrain = 64\ntest = 64\n\n[[models]]\nzoo = "lenet-mnist"\n\n'
        '[[methods]]\nkind = "nan-method"\nn = 1\n'
    )
    register_method(NaNMethod)
    try:
        status = main(["bench", "--config", str(config), "--out", str(tmp_path / "out"), "--no-progress"])
    finally:
        unregister("nan-method")
    err = capsys.readouterr().err
    assert status == 1
    assert (
        "foolbench: cell failed: lenet-mnist / none / nan-method(n=1): ValueError: the method returned bad metrics"
        in err
    )
    assert "1 cell(s) failed" in err and (tmp_path / "out" / "results.json").is_file()
