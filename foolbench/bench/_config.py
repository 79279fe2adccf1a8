"""Suite configurations: a small TOML file naming models, defenses, methods and data."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from foolbench.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["BUILTIN_SUITES", "DEFENSES", "METHODS", "Spec", "SuiteConfig", "load_config", "parse_config"]

BUILTIN_SUITES = ("quick", "paper")

# kind -> allowed parameters and their defaults
DEFENSES: dict[str, dict[str, Any]] = {
    "none": {},
    "gaussian": {"sigma": 1.0},
    "median": {"size": 3},
    "bit-depth": {"bits": 1},
    "ensemble": {"members": [], "combine": "mean_probs"},
    "feature-squeezing": {"bits": 1, "median": 3, "false_positive_rate": 0.05},
    "fooling-class": {
        "rounds": 1,
        "searches_per_round": 3,
        "max_evaluations": 30_000,
        "encoding": "direct",
        "epochs": 6,
        "fine_tune": False,
    },
    "uap-fine-tuning": {"rounds": 2, "eps": 0.3, "epochs": 2, "fit": 500, "max_passes": 10},
}
METHODS: dict[str, dict[str, Any]] = {
    "random": {"n": 256},
    "map-elites": {
        "encoding": "direct",
        "max_evaluations": 30_000,
        "max_seconds": None,
        "batch_size": 64,
        "mutation_rate": 0.02,
        "eta": None,
        "target_confidence": 0.9999,
        "classes": None,
    },
    "gradient-ascent": {"steps": 200, "lr": 0.01, "l2_decay": 0.0, "blur_every": 0, "classes": None},
    "pgd": {"eps": [0.1, 0.2, 0.3], "steps": 40, "norm": "inf", "n": 500},
    "uap": {"eps": 0.3, "norm": "inf", "method": "sgd", "fit": 500, "held_out": 1000, "max_passes": 10},
}
MODEL_KEYS = {
    "name",
    "zoo",
    "factory",
    "input_shape",
    "num_classes",
    "mean",
    "std",
    "bounds",
    "train_epochs",
    "image_size",
    "dataset",
}
DATASETS = {"mnist": {"train": 4000, "test": 1000}, "imagenet-photos": {"size": 224}}


@dataclass(frozen=True)
class Spec:
    """One model, defense or method of a suite.

    Attributes:
        name: the label used in reports and cell keys (unique within its list).
        kind: the registry key (``"median"``, ``"pgd"``, ...; models: ``"zoo"`` or ``"factory"``).
        params: the parameters, defaults filled in.
        only: for defenses and methods, the model names it applies to (None: all).

    Examples:
        >>> load_config("quick").defenses[1]
        Spec(name='median', kind='median', params={'size': 3}, only=None)
    """

    name: str
    kind: str
    params: dict[str, Any]
    only: tuple[str, ...] | None = None


@dataclass
class SuiteConfig:
    """A parsed and validated suite.

    Attributes:
        name: the suite's name.
        seed: seeds every search, attack and training run.
        data: ``{"dataset": "mnist", "train": N, "test": M}`` or ``{"dataset": "imagenet-photos"}``.
        models, defenses, methods: the cells are their product (restricted by each spec's ``only``).
        raw: the parsed TOML (stored in ``results.json``).

    Examples:
        >>> cfg = load_config("quick")
        >>> [m.name for m in cfg.models], len(cfg.methods)
        (['lenet-mnist', 'cnn'], 6)
    """

    name: str
    seed: int
    data: dict[str, Any]
    models: list[Spec]
    defenses: list[Spec]
    methods: list[Spec]
    raw: dict[str, Any] = field(default_factory=dict)


def _label(kind: str, params: dict[str, Any], defaults: dict[str, Any]) -> str:
    changed = [f"{k}={v}" for k, v in params.items() if k in defaults and v != defaults[k] and k != "members"]
    return kind if not changed else f"{kind}({','.join(changed)})"


def _tables(raw: Any, where: str, source: str) -> list[dict[str, Any]]:
    """``raw`` as a non-empty array of TOML tables, or raise naming the section."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source}: [[{where}]] must be a non-empty array of tables")
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: {where}[{i}] must be a table, got {entry!r}")
    return raw


def _unique(specs: list[Spec], where: str, source: str) -> list[Spec]:
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{source}: {where} names must be unique, repeated: {dup} (give each a name =)")
    return specs


def _specs(raw: Any, where: str, registry: dict[str, dict[str, Any]], source: str) -> list[Spec]:
    out: list[Spec] = []
    for i, entry in enumerate(_tables(raw, where, source)):
        kind = entry.get("kind")
        if kind not in registry:
            raise ConfigError(f"{source}: {where}[{i}] has unknown kind {kind!r}; valid kinds: {sorted(registry)}")
        defaults = registry[kind]
        extra = set(entry) - set(defaults) - {"kind", "name", "models"}
        if extra:
            raise ConfigError(
                f"{source}: {where}[{i}] ({kind}) has unknown key(s) {sorted(extra)}; "
                f"valid keys: {sorted([*defaults, 'name', 'models'])}"
            )
        params = {**defaults, **{k: v for k, v in entry.items() if k in defaults}}
        only = entry.get("models")
        if only is not None and (not isinstance(only, list) or not all(isinstance(m, str) for m in only)):
            raise ConfigError(f"{source}: {where}[{i}].models must be a list of model names, got {only!r}")
        name = str(entry.get("name") or _label(kind, params, defaults))
        out.append(Spec(name, kind, params, None if only is None else tuple(only)))
    return _unique(out, where, source)


def _models(raw: Any, source: str) -> list[Spec]:
    out: list[Spec] = []
    for i, entry in enumerate(_tables(raw, "models", source)):
        extra = set(entry) - MODEL_KEYS
        if extra:
            raise ConfigError(f"{source}: models[{i}] has unknown key(s) {sorted(extra)}; valid: {sorted(MODEL_KEYS)}")
        if ("zoo" in entry) == ("factory" in entry):
            raise ConfigError(
                f"{source}: models[{i}] needs exactly one of zoo = (a zoo name) or "
                'factory = ("package.module:function" returning an nn.Module)'
            )
        if entry.get("dataset", "mnist") not in DATASETS:
            raise ConfigError(
                f"{source}: models[{i}].dataset {entry['dataset']!r} is unknown; valid: {sorted(DATASETS)}"
            )
        if "factory" in entry:
            for key in ("input_shape", "num_classes"):
                if key not in entry:
                    raise ConfigError(f"{source}: models[{i}] with a factory needs {key} =")
            kind = "factory"
        else:
            kind = "zoo"
        name = str(entry.get("name") or entry.get("zoo") or entry["factory"].split(":")[-1])
        out.append(Spec(name, kind, dict(entry)))
    return _unique(out, "models", source)


def parse_config(raw: dict[str, Any], *, source: str = "<config>") -> SuiteConfig:
    """Validate a parsed TOML document into a :class:`SuiteConfig`.

    Raises:
        ConfigError: unknown kinds or keys (the message lists the valid ones), missing sections.

    Examples:
        >>> cfg = parse_config({"models": [{"zoo": "lenet-mnist"}], "methods": [{"kind": "pgd", "eps": [0.1]}]})
        >>> [(m.name, m.kind) for m in cfg.methods], cfg.defenses[0].kind
        ([('pgd(eps=[0.1])', 'pgd')], 'none')
    """
    unknown = set(raw) - {"suite", "data", "models", "defenses", "methods"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown section(s) {sorted(unknown)}; valid: suite, data, models, defenses, methods"
        )
    suite = raw.get("suite", {})
    if not isinstance(suite, dict):
        raise ConfigError(f"{source}: [suite] must be a table")
    data = dict(raw.get("data", {"dataset": "mnist"}))
    dataset = data.get("dataset", "mnist")
    if dataset not in DATASETS:
        raise ConfigError(f"{source}: data.dataset {dataset!r} is unknown; valid: {sorted(DATASETS)}")
    data = {"dataset": dataset, **DATASETS[dataset], **data}
    models = _models(raw.get("models"), source)
    model_names = {m.name for m in models}
    defenses = _specs(raw.get("defenses", [{"kind": "none"}]), "defenses", DEFENSES, source)
    methods = _specs(raw.get("methods"), "methods", METHODS, source)
    for spec in [*defenses, *methods]:
        for m in spec.only or ():
            if m not in model_names:
                raise ConfigError(f"{source}: {spec.name} names unknown model {m!r}; models: {sorted(model_names)}")
        for m in spec.params.get("members", []) if spec.kind == "ensemble" else []:
            if m not in model_names:
                raise ConfigError(f"{source}: ensemble member {m!r} is not a model of the suite: {sorted(model_names)}")
    seed = suite.get("seed", 0)
    if not isinstance(seed, int):
        raise ConfigError(f"{source}: suite.seed must be an integer, got {seed!r}")
    return SuiteConfig(str(suite.get("name", Path(source).stem)), seed, data, models, defenses, methods, raw)


def load_config(config: str | Path) -> SuiteConfig:
    """Load a built-in suite by name (``"quick"``, ``"paper"``) or a TOML file.

    Raises:
        ConfigError: malformed TOML (with its line and column) or an invalid suite.
        FileNotFoundError: no such file.

    Examples:
        >>> cfg = load_config("quick")
        >>> cfg.name, cfg.data["dataset"]
        ('quick', 'mnist')
    """
    if str(config) in BUILTIN_SUITES:
        text = resources.files("foolbench.bench").joinpath(f"suites/{config}.toml").read_text()
        source = f"suite {config!r}"
    else:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"suite config not found: {str(path)!r} (built-in suites: {list(BUILTIN_SUITES)})")
        text = path.read_text()
        source = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: malformed TOML: {err}") from None
    return parse_config(raw, source=source)
