"""Suite configurations: a small TOML file naming models, defenses, methods and data."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from foolbench.bench import _defenses, _methods  # noqa: F401 - registers the built-in kinds
from foolbench.bench._params import Params, check_value
from foolbench.bench._registry import DEFENSES, METHODS, lookup
from foolbench.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["BUILTIN_SUITES", "Spec", "SuiteConfig", "load_config", "parse_config", "run_name"]

BUILTIN_SUITES = ("quick", "paper", "paper-imagenet")
BUILTIN_DATASETS = ("mnist", "imagenet-photos")
INT64 = 2**63

# every key of [suite], [data] and [[models]]: the rules check_value applies, and a one-line meaning
SUITE_KEYS: dict[str, dict[str, Any]] = {
    "name": {"type": "str", "doc": "the suite's name (default: the file's stem)"},
    "seed": {"type": "int", "lo": 0, "hi": INT64 - 1, "doc": "seeds every cell (each cell: from it and its key)"},
}
DATA_KEYS: dict[str, dict[str, Any]] = {
    "dataset": {
        "type": "str",
        "doc": 'mnist, imagenet-photos, "module:function" returning (x_train, y_train, x_test, y_test), or an .npz',
    },
    "train": {"type": "int", "lo": 1, "hi": 4000, "doc": "MNIST training images (default 4000)"},
    "test": {"type": "int", "lo": 1, "hi": 1000, "doc": "MNIST held-out images (default 1000)"},
    "size": {"type": "int", "lo": 8, "hi": 4096, "doc": "imagenet-photos: image side in pixels (default 224)"},
}
DATA_DEFAULTS: dict[str, dict[str, Any]] = {"mnist": {"train": 4000, "test": 1000}, "imagenet-photos": {"size": 224}}
MODEL_KEYS: dict[str, dict[str, Any]] = {
    "name": {"type": "str", "doc": "label in reports (default: the zoo name or the factory's function)"},
    "zoo": {"type": "str", "doc": "a zoo model (see `foolbench models`)"},
    "factory": {"type": "str", "doc": '"module:function" taking num_classes and returning an nn.Module'},
    "input_shape": {"type": "ints", "lo": 1, "hi": 65_536, "doc": "factory models: [C, H, W]"},
    "num_classes": {"type": "int", "lo": 2, "hi": 1_000_000, "doc": "factory models: number of classes"},
    "mean": {"type": "float-or-floats", "doc": "per-channel mean the model normalises with"},
    "std": {"type": "float-or-floats", "lo": 0, "lo_open": True, "doc": "per-channel std the model normalises with"},
    "bounds": {"type": "floats", "doc": "[low, high] range of raw inputs (default [0, 1])"},
    "train_epochs": {"type": "int", "lo": 0, "hi": 10_000, "doc": "factory models: train this many epochs first"},
    "image_size": {"type": "int", "lo": 8, "hi": 4096, "doc": "zoo ImageNet models: input side in pixels"},
    "dataset": {"type": "str", "choices": BUILTIN_DATASETS, "doc": "the model's data when not the suite's"},
}
SPEC_KEYS = ("kind", "name", "models")
_ZOO_KEYS = {"name", "zoo", "image_size", "dataset"}  # a zoo model brings its own shape, classes, weights
_FACTORY_KEYS = set(MODEL_KEYS) - {"zoo", "image_size"}


@dataclass(frozen=True)
class Spec:
    """One model, defense or method of a suite.

    Attributes:
        name: the label used in reports and cell keys (unique within its list).
        kind: the registry key (``"median"``, ``"pgd"``, ...; models: ``"zoo"`` or ``"factory"``).
        params: the parameters, defaults filled in.
        only: for defenses and methods, the model names it applies to (None: all).
        group: for one of ``runs = N`` independent runs, the method's name without the run suffix.
        run: for one of ``runs = N`` independent runs, its index (1..N); None otherwise.

    Examples:
        >>> load_config("quick").defenses[1]
        Spec(name='median', kind='median', params={'size': 3}, only=None)
    """

    name: str
    kind: str
    params: dict[str, Any]
    only: tuple[str, ...] | None = None
    group: str | None = field(default=None, repr=False)
    run: int | None = field(default=None, repr=False)

    def build(self, registry: Mapping[str, type[Any]]) -> Any:
        """An instance of the class ``registry`` holds for :attr:`kind`, with these parameters."""
        cls = lookup(registry, self.kind, self.name)
        return cls(cls.Params(**self.params))


@dataclass
class SuiteConfig:
    """A parsed and validated suite.

    Attributes:
        name: the suite's name.
        seed: seeds every search, attack and training run.
        data: ``{"dataset": "mnist", "train": N, "test": M}`` or ``{"dataset": "imagenet-photos"}``.
        models, defenses, methods: the cells are their product (restricted by each spec's ``only``).
        raw: the parsed TOML (stored in ``results.json``).
        folder: the suite file's folder (factories are looked up there first), or None.

    Examples:
        >>> cfg = load_config("quick")
        >>> [m.name for m in cfg.models], len(cfg.methods)
        (['lenet-mnist', 'cnn'], 8)
    """

    name: str
    seed: int
    data: dict[str, Any]
    models: list[Spec]
    defenses: list[Spec]
    methods: list[Spec]
    raw: dict[str, Any] = field(default_factory=dict)
    folder: str | None = None


def _label(kind: str, params: Params) -> str:
    changed = [f"{k}={v}" for k, v in params.changed().items() if k != "members"]
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


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.name must be a non-empty string, got {value!r}")
    return value


def _specs(raw: Any, where: str, registry: Mapping[str, type[Any]], source: str) -> list[Spec]:
    out: list[Spec] = []
    for i, entry in enumerate(_tables(raw, where, source)):
        at = f"{source}: {where}[{i}]"
        cls = lookup(registry, entry.get("kind"), at)
        params = cls.Params.from_toml({k: v for k, v in entry.items() if k not in SPEC_KEYS}, where=at)
        only = entry.get("models")
        if only is not None and (not isinstance(only, list) or not all(isinstance(m, str) for m in only)):
            raise ConfigError(f"{at}.models must be a list of model names, got {only!r}")
        if only == []:  # would silently apply to no model (leave the key out for every model)
            raise ConfigError(f"{at}.models must name at least one model (leave the key out for every model), got []")
        name = _name(entry["name"], at) if "name" in entry else _label(cls.kind, params)
        values, models = params.as_dict(), None if only is None else tuple(only)
        runs = int(values.get("runs", 1))
        if runs > 1:  # N independent runs: N cells (an executor fans them out), seeded by their names
            out += [Spec(run_name(name, i), cls.kind, values, models, name, i) for i in range(1, runs + 1)]
        else:
            out.append(Spec(name, cls.kind, values, models))
    return _unique(out, where, source)


def run_name(name: str, run: int) -> str:
    """The cell name of run ``run`` (1-based) of a method with ``runs = N``.

    Examples:
        >>> run_name("evolve-direct", 2)
        'evolve-direct#run2'
    """
    return f"{name}#run{run}"


def _keys(entry: dict[str, Any], rules: dict[str, dict[str, Any]], where: str) -> dict[str, Any]:
    """Check every key of a table against ``rules``, naming the TOML key in each message."""
    extra = set(entry) - set(rules)
    if extra:
        raise ConfigError(f"{where} has unknown key(s) {sorted(extra)}; valid keys: {sorted(rules)}")
    return {k: check_value(f"{where}.{k}", v, rules[k]) for k, v in entry.items()}


def _models(raw: Any, source: str) -> list[Spec]:
    out: list[Spec] = []
    for i, entry in enumerate(_tables(raw, "models", source)):
        at = f"{source}: models[{i}]"
        entry = _keys(entry, MODEL_KEYS, at)
        if ("zoo" in entry) == ("factory" in entry):
            raise ConfigError(
                f"{at} needs exactly one of zoo = (a zoo name) or "
                'factory = ("package.module:function" returning an nn.Module)'
            )
        kind = "factory" if "factory" in entry else "zoo"
        stray = sorted(set(entry) - (_ZOO_KEYS if kind == "zoo" else _FACTORY_KEYS))
        if stray:  # a key of the other kind would change nothing: refused rather than ignored
            raise ConfigError(
                f"{at}: {', '.join(stray)} do(es) not apply to a {kind} model (zoo models take "
                f"{sorted(_ZOO_KEYS - {'zoo'})}, factory models {sorted(_FACTORY_KEYS - {'factory'})})"
            )
        if "factory" in entry:
            for key in ("input_shape", "num_classes"):
                if key not in entry:
                    raise ConfigError(f"{at} with a factory needs {key} =")
            if len(entry["input_shape"]) != 3:
                raise ConfigError(f"{at}.input_shape must be [C, H, W], got {entry['input_shape']!r}")
        bounds = entry.get("bounds")
        if bounds is not None and (len(bounds) != 2 or not bounds[0] < bounds[1]):
            raise ConfigError(f"{at}.bounds must be [low, high] with low < high, got {bounds!r}")
        name = _name(entry["name"], at) if "name" in entry else str(entry.get("zoo") or entry["factory"].split(":")[-1])
        out.append(Spec(name, kind, dict(entry)))
    return _unique(out, "models", source)


def _data(raw: Any, source: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [data] must be a table, got {raw!r}")
    data = _keys(raw, DATA_KEYS, f"{source}: data")
    dataset = data.setdefault("dataset", "mnist")
    custom = ":" in dataset or dataset.endswith(".npz")
    if dataset not in BUILTIN_DATASETS and not custom:
        raise ConfigError(
            f"{source}: data.dataset {dataset!r} is unknown; valid: {sorted(BUILTIN_DATASETS)}, "
            '"module:function" or a path ending in .npz'
        )
    allowed = {"dataset", *DATA_DEFAULTS.get(dataset, {})}
    extra = set(data) - allowed
    if extra:
        raise ConfigError(
            f"{source}: data.dataset {dataset!r} takes no key(s) {sorted(extra)}; valid: {sorted(allowed)}"
        )
    return {"dataset": dataset, **DATA_DEFAULTS.get(dataset, {}), **data}


def parse_config(raw: dict[str, Any], *, source: str = "<config>", folder: str | Path | None = None) -> SuiteConfig:
    """Validate a parsed TOML document into a :class:`SuiteConfig`.

    Every key is checked at parse time (type, range, choices) and a bad one is named in the
    message as it is written in the TOML file.

    Args:
        raw: the parsed TOML document.
        source: names the file in messages.
        folder: the suite file's folder, where ``"module:function"`` factories are looked up first.

    Raises:
        ConfigError: unknown kinds or keys (the message lists the valid ones), bad values, missing sections.

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
    suite = _keys(suite, SUITE_KEYS, f"{source}: suite")
    data = _data(raw.get("data", {"dataset": "mnist"}), source)
    models = _models(raw.get("models"), source)
    model_names = [m.name for m in models]
    defenses = _specs(raw.get("defenses", [{"kind": "none"}]), "defenses", DEFENSES, source)
    methods = _specs(raw.get("methods"), "methods", METHODS, source)
    for spec in [*defenses, *methods]:
        for m in spec.only or ():
            if m not in model_names:
                raise ConfigError(f"{source}: {spec.name} names unknown model {m!r}; models: {sorted(model_names)}")
    for spec in defenses:
        spec.build(DEFENSES).validate(model_names, source)
    name = str(suite.get("name", Path(source).stem))
    folder = None if folder is None else str(Path(folder).resolve())
    return SuiteConfig(name, int(suite.get("seed", 0)), data, models, defenses, methods, raw, folder)


def load_config(config: str | Path) -> SuiteConfig:
    """Load a built-in suite by name (``"quick"``, ``"paper"``, ``"paper-imagenet"``) or a TOML file.

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
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read the suite file as UTF-8 text: {err}") from None
        source = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: malformed TOML: {err}") from None
    folder = None if str(config) in BUILTIN_SUITES else Path(config).parent
    return parse_config(raw, source=source, folder=folder)
