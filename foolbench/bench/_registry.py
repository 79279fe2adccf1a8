"""The name -> class registries of suite methods and defenses, their base classes and the run context.

A method kind is one :class:`Method` subclass: it owns its parameters (a :class:`Params`
dataclass), its run (:meth:`Method.run`) and its report section (:meth:`Method.report`). A
defense kind is one :class:`Defense` subclass. ``register_method`` / ``register_defense`` add a
kind; a suite's ``kind = "..."`` then finds it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Generic, TypeVar

import torch

from foolbench.bench._params import Params
from foolbench.errors import ConfigError, InvalidArgumentError

__all__ = [
    "DEFENSES",
    "METHODS",
    "CellOutput",
    "Context",
    "Defense",
    "Method",
    "Model",
    "Target",
    "register_defense",
    "register_method",
    "unregister",
]

Batch = tuple[torch.Tensor, torch.Tensor]
P = TypeVar("P", bound=Params)


@dataclass
class Model:
    """One model of a suite, built.

    Attributes:
        name: its suite name.
        classifier: the wrapped classifier.
        factory: makes a fresh module of the architecture (``num_classes -> nn.Module``), or None.
        identity: a hash of its weights (a factory model's: and of its architecture; changes whenever the model does).
    """

    name: str
    classifier: Any
    factory: Callable[[int], torch.nn.Module] | None
    identity: str


@dataclass
class Target:
    """What a method attacks: a (possibly defended) classifier.

    Attributes:
        classifier: the classifier methods run on.
        classes: the classes a search targets by default.
        detector: a detector whose detection rate the methods report, or None.
        table: per-round rows a retraining defense reports (``{"rows": [...]}``), or None.
        info: extra clean-accuracy columns (e.g. a detector's threshold).
    """

    classifier: Any
    classes: list[int]
    detector: Any = None
    table: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class CellOutput:
    """What a method run returns: JSON metrics, tensors kept for transfer, files (relative path -> bytes).

    The runner (the driver) writes ``files`` under the output folder, so a method never writes there.
    """

    metrics: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Context:
    """Everything a method or defense may use: no hidden cursor, no globals.

    Attributes:
        train: (images, labels) the model's training split.
        test: (images, labels) its held-out split.
        seed: the seed of this run (derived from the suite seed and the cell's key).
        key: the cell's file key (name files ``images/{key}.png``); empty for a defense.
        device: the device models and data live on.
        scratch: a folder for this run's resume checkpoints (named by its digest).
        models: every model of the suite by name (ensembles use them).
        progress: called with the fraction done (0..1) inside the run.
        show_progress: whether the run may show its own progress bars (e.g. a search's).
    """

    train: Batch
    test: Batch
    seed: int
    device: str | None
    scratch: Path
    key: str = ""
    models: Mapping[str, Model] = field(default_factory=dict)
    progress: Callable[[float], None] = lambda _: None
    show_progress: bool = False


class Method(ABC, Generic[P]):
    """Base class of a suite method kind.

    Subclasses set :attr:`kind`, :attr:`Params` (a frozen :class:`Params` dataclass) and
    :attr:`title`, implement :meth:`run`, and may override :meth:`report` and :meth:`transfer_rate`.

    Examples:
        >>> sorted(METHODS)[:2]
        ['attacks', 'gradient-ascent']
    """

    kind: ClassVar[str]
    Params: ClassVar[type[Params]]
    title: ClassVar[str] = ""
    rates: ClassVar[tuple[str, ...]] = ()  # metric names that are fractions in [0, 1]
    transfer: ClassVar[str | None] = None  # title of its transfer matrix, when :meth:`transfer_rate` is given

    def __init__(self, params: P) -> None:
        self.params: P = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"

    @abstractmethod
    def run(self, target: Target, ctx: Context) -> CellOutput:
        """Run on one (defended) model and return its metrics."""

    def check(self, num_classes: int) -> str | None:
        """What is wrong with these parameters on a model of ``num_classes`` classes (None: nothing).

        Run for every model a method applies to before any cell runs, so a bad ``classes`` fails the
        suite at once, naming the method, rather than each cell after the others ran. The default checks
        a ``classes`` parameter: no class twice, each below ``num_classes``.
        """
        classes = getattr(self.params, "classes", None)
        if not classes or not isinstance(classes, list) or any(type(c) is not int for c in classes):
            return None  # unset, or a user kind's own kind of classes (names...): its own run checks it
        if len(set(classes)) != len(classes):
            return f"classes names a class twice: {classes}"
        if max(classes) >= num_classes:
            return f"classes must be below the model's {num_classes} classes, got {max(classes)}"
        return None

    @classmethod
    def revision(cls, params: Mapping[str, Any]) -> int:
        """The revision of this kind's behaviour for ``params`` (default 1), part of a cell's digest.

        Raise it, for the parameters concerned, when a new version computes a different result from
        the same parameters and seed: finished cells of an older revision are then run again instead
        of being reused. Revision 1 adds nothing to the digest, so cells stored before revisions
        existed stay valid.

        Examples:
            >>> METHODS["uap"].revision({"eps": 0.3})
            1
        """
        return 1

    @classmethod
    def report(cls, cells: list[dict[str, Any]]) -> list[str]:
        """Markdown lines of this kind's report section (default: a table of its scalar metrics)."""
        keys = sorted({k for c in cells for k, v in c["metrics"].items() if isinstance(v, int | float | str)})
        rows = [
            [c["model"], c["defense"], c["method"], *[_cell_text(c["metrics"].get(k)) for k in keys]] for c in cells
        ]
        return [f"## {cls.title or cls.kind}", "", *table(["model", "defense", "method", *keys], rows), ""]

    @classmethod
    def transfer_rate(cls, classifier: Any, tensors: dict[str, torch.Tensor], images: torch.Tensor) -> float | None:
        """How often what a cell made on one model fools ``classifier`` (None: this kind has no transfer)."""
        return None


class Defense(ABC, Generic[P]):
    """Base class of a suite defense kind: builds the :class:`Target` methods run on.

    Examples:
        >>> "median" in DEFENSES
        True
    """

    kind: ClassVar[str]
    Params: ClassVar[type[Params]]

    def __init__(self, params: P) -> None:
        self.params: P = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"

    @abstractmethod
    def build(self, model: Model, ctx: Context) -> Target:
        """Wrap (or retrain) ``model``."""

    def validate(self, model_names: list[str], where: str) -> None:
        """Check references to other models at parse time (default: nothing to check)."""

    def depends_on(self, model: str) -> list[str]:
        """The other models of the suite the defense of ``model`` is built from (default: none).

        Their identities (weights, settings) join the defended model's in the digest of every cell
        on this defense, so a change to one of them recomputes those cells.
        """
        return []

    @classmethod
    def revision(cls, params: Mapping[str, Any], bounds: tuple[float, float]) -> int:
        """The revision of this kind's behaviour for ``params`` on a model of input ``bounds`` (default 1).

        Part of the digest of every cell on this defense, as :meth:`Method.revision`: raise it where a new
        version defends differently with the same parameters, and the cells of the older behaviour are run
        again. Revision 1 adds nothing to the digest.

        Examples:
            >>> DEFENSES["median"].revision({"size": 3}, (0.0, 1.0))
            1
        """
        return 1


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def fmt(x: float | None, pct: bool = True) -> str:
    """A rate as a percentage (or a count with ``pct=False``); ``-`` for None."""
    if x is None:
        return "-"
    return f"{100 * x:.2f}%" if pct else f"{x:,.0f}"


def _cell_text(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


_METHODS: dict[str, type[Method[Any]]] = {}
_DEFENSES: dict[str, type[Defense[Any]]] = {}
METHODS: Mapping[str, type[Method[Any]]] = MappingProxyType(_METHODS)
DEFENSES: Mapping[str, type[Defense[Any]]] = MappingProxyType(_DEFENSES)

T = TypeVar("T", bound=type[Any])


def _register(registry: dict[str, Any], base: type, cls: T, replace: bool) -> T:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise InvalidArgumentError(f"a {base.__name__.lower()} kind must subclass {base.__name__}, got {cls!r}")
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise InvalidArgumentError(f"{cls.__name__}.kind must be a non-empty string, got {kind!r}")
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and issubclass(params, Params) and dataclasses.is_dataclass(params)):
        raise InvalidArgumentError(f"{cls.__name__}.Params must be a Params dataclass, got {params!r}")
    for f in dataclasses.fields(params):  # a plain field has no rules: parsing it and the reference would fail
        if "type" not in f.metadata or "doc" not in f.metadata:
            raise InvalidArgumentError(
                f"{cls.__name__}.Params field {f.name!r} is a plain dataclass field: make it with "
                "param(default, doc, type=...) so suite files can check it and the reference can describe it"
            )
    if kind in registry and registry[kind] is not cls and not replace:
        raise InvalidArgumentError(
            f"kind {kind!r} is already registered ({registry[kind].__name__}); pass replace=True"
        )
    registry[kind] = cls
    return cls


def register_method(cls: T, *, replace: bool = False) -> T:
    """Add a method kind (usable as a class decorator); ``kind = cls.kind`` in suites then runs it.

    Raises:
        InvalidArgumentError: not a :class:`Method` subclass, no ``kind`` or ``Params``, a ``Params`` field not
            made with :func:`param`, or the kind is taken.
    """
    return _register(_METHODS, Method, cls, replace)


def register_defense(cls: T, *, replace: bool = False) -> T:
    """Add a defense kind (usable as a class decorator).

    Raises:
        InvalidArgumentError: not a :class:`Defense` subclass, no ``kind`` or ``Params``, a ``Params`` field not
            made with :func:`param`, or the kind is taken.
    """
    return _register(_DEFENSES, Defense, cls, replace)


def unregister(kind: str) -> None:
    """Remove a method or defense kind (for tests and plug-ins that clean up after themselves)."""
    _METHODS.pop(kind, None)
    _DEFENSES.pop(kind, None)


def lookup(registry: Mapping[str, type[Any]], kind: Any, where: str) -> type[Any]:
    """The class registered for ``kind``, or a ConfigError listing the valid kinds."""
    if not isinstance(kind, str) or kind not in registry:
        raise ConfigError(f"{where} has unknown kind {kind!r}; valid kinds: {sorted(registry)}")
    return registry[kind]
