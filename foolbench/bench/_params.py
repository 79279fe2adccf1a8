"""Validated parameter dataclasses for suite entries: each field knows its type, range, default and meaning."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

from typing_extensions import Self

from foolbench.errors import ConfigError

__all__ = ["Params", "check_value", "field_doc", "param"]

P = TypeVar("P", bound="Params")

# value types a parameter can have (TOML has no null: None only as a default)
TYPES = ("int", "float", "bool", "str", "floats", "ints", "strs", "float-or-floats")
INT64 = 2**63


def param(
    default: Any,
    doc: str,
    *,
    type: str,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    choices: Sequence[Any] | None = None,
    late: bool = False,
) -> Any:
    """A dataclass field carrying its validation rules and a one-line meaning.

    Args:
        default: the default (None means "not set"; TOML cannot write None).
        doc: one line saying what the parameter does (shown in the suite reference).
        type: one of ``int``, ``float``, ``bool``, ``str``, ``floats`` (a list), ``ints``, ``strs``,
            ``float-or-floats``.
        lo, hi: the inclusive range of a number (``lo_open`` / ``hi_open``: that bound excluded); for lists,
            of each item.
        choices: the allowed values.
        late: a method parameter added after cells were first stored: at its default it is left out of
            a cell's digest (:meth:`Params.identity`), so cells computed before it existed are still
            reused. Scalar defaults only.

    Returns:
        A :func:`dataclasses.field`.
    """
    if type not in TYPES:
        raise ValueError(f"type must be one of {TYPES}, got {type!r}")
    if late and isinstance(default, list):
        raise ValueError("a late parameter needs a scalar default (identity() compares it with the field's)")
    meta = {"doc": doc, "type": type, "lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices, "late": late}
    if hi_open:  # only where set: the reference page and schema of the other fields stay as they are
        meta["hi_open"] = True
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_doc(f: dataclasses.Field[Any]) -> dict[str, Any]:
    """The rules of one field as plain data (for the reference page and the JSON schema)."""
    return dict(f.metadata)


def _number(key: str, value: Any, integer: bool, meta: dict[str, Any]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise ConfigError(f"{key} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be finite, got {value!r}")
    if not integer and isinstance(value, int) and abs(value) > sys.float_info.max:  # TOML integers are unbounded
        raise ConfigError(f"{key} must be a finite number, got an integer of {len(str(abs(value)))} digits")
    lo, hi = meta.get("lo"), meta.get("hi")
    hi = INT64 - 1 if hi is None and integer else hi
    bad_lo = lo is not None and (value <= lo if meta.get("lo_open") else value < lo)
    bad_hi = hi is not None and (value >= hi if meta.get("hi_open") else value > hi)
    if bad_lo or bad_hi:
        left = "(" if meta.get("lo_open") else "["
        right = "inf)" if hi is None else f"{hi}{')' if meta.get('hi_open') else ']'}"
        raise ConfigError(f"{key} must be in {left}{lo if lo is not None else '-inf'}, {right}, got {value!r}")
    return value


def check_value(key: str, value: Any, meta: dict[str, Any]) -> Any:
    """Validate ``value`` against a field's rules; ``key`` (the TOML key) is named in every message.

    Raises:
        ConfigError: wrong type, out of range, not one of the choices, an empty list.

    Examples:
        >>> check_value("methods[0].n", 5, {"type": "int", "lo": 1})
        5
        >>> check_value("methods[0].n", -5, {"type": "int", "lo": 1})
        Traceback (most recent call last):
        ...
        foolbench.errors.ConfigError: methods[0].n must be in [1, 9223372036854775807], got -5
    """
    kind = meta["type"]
    if kind in ("floats", "ints", "strs", "float-or-floats"):
        if kind == "float-or-floats" and not isinstance(value, list):  # a float like the list's items: eps = 1 is 1.0
            return float(_number(key, value, False, meta))
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        item = {"floats": "float", "ints": "int", "strs": "str", "float-or-floats": "float"}[kind]
        if not value:  # an empty list would silently mean the default (every class, no member...)
            if kind == "float-or-floats":
                raise ConfigError(f"{key} must be a number or a non-empty list of numbers, got []")
            raise ConfigError(f"{key} must be a non-empty list (leave the key out for its default), got []")
        return [check_value(f"{key}[{i}]", v, {**meta, "type": item}) for i, v in enumerate(value)]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
    else:
        value = _number(key, value, kind == "int", meta)
        value = float(value) if kind == "float" else value
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Params:
    """Base of every kind's parameters: a frozen dataclass whose fields are made with :func:`param`.

    Examples:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Demo(Params):
        ...     n: int = param(8, "how many", type="int", lo=1)
        >>> Demo.from_toml({"n": 3}, where="methods[0]")
        Demo(n=3)
    """

    EXTRA_KEYS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_toml(cls, entry: dict[str, Any], *, where: str) -> Self:
        """Build from a TOML table, validating every key (``where`` prefixes the key in messages).

        Raises:
            ConfigError: an unknown key (the valid ones are listed) or a bad value.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(entry) - set(fields) - set(cls.EXTRA_KEYS)
        if unknown:
            raise ConfigError(
                f"{where} has unknown key(s) {sorted(unknown)}; valid keys: {sorted([*fields, *cls.EXTRA_KEYS])}"
            )
        values = {k: check_value(f"{where}.{k}", v, dict(fields[k].metadata)) for k, v in entry.items() if k in fields}
        try:
            return cls(**values)
        except ConfigError as err:  # a combination refused by __post_init__: name the entry
            raise ConfigError(f"{where}: {err}") from None

    def as_dict(self) -> dict[str, Any]:
        """The parameters as plain (JSON-ready) data."""
        return dataclasses.asdict(self)

    @classmethod
    def identity(cls, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` (an :meth:`as_dict`) as a cell's digest sees it: ``late`` parameters at their default left out.

        Examples:
            >>> @dataclasses.dataclass(frozen=True)
            ... class Demo(Params):
            ...     n: int = param(8, "how many", type="int", lo=1)
            ...     k: int = param(0, "added later", type="int", late=True)
            >>> Demo.identity({"n": 8, "k": 0}), Demo.identity({"n": 8, "k": 2})
            ({'n': 8}, {'n': 8, 'k': 2})
        """
        late = {f.name: f.default for f in dataclasses.fields(cls) if f.metadata.get("late")}
        return {k: v for k, v in params.items() if k not in late or v != late[k]}

    def changed(self) -> dict[str, Any]:
        """The parameters that differ from their defaults."""
        default = type(self)()
        return {k: v for k, v in self.as_dict().items() if getattr(default, k) != v}
