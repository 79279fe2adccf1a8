"""The suite-file reference and JSON schema, generated from the registries (so they never go stale)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from foolbench.bench._config import _FACTORY_KEYS, _ZOO_KEYS, DATA_KEYS, MODEL_KEYS, SUITE_KEYS
from foolbench.bench._registry import DEFENSES, METHODS, table

__all__ = ["json_schema", "reference_markdown"]

_SPEC_KEYS = {
    "kind": {"type": "str", "doc": "the kind (a registered name)"},
    "name": {"type": "str", "doc": "label in reports and cell keys (default: the kind and its changed parameters)"},
    "models": {"type": "strs", "doc": "the suite's models it applies to (default: all)"},
}
_TYPE_NAMES = {
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "str": "string",
    "floats": "list of numbers",
    "ints": "list of integers",
    "strs": "list of strings",
    "float-or-floats": "number or list of numbers",
}


def _range(meta: Mapping[str, Any]) -> str:
    if meta.get("choices") is not None:
        return " / ".join(f"`{c}`" for c in meta["choices"])
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None and hi is None:
        return ""
    left = "(" if meta.get("lo_open") else "["
    right = "inf)" if hi is None else f"{hi}{')' if meta.get('hi_open') else ']'}"
    return f"{left}{'-inf' if lo is None else lo}, {right}"


def _default(value: Any) -> str:
    return "(none)" if value is None else f"`{json.dumps(value)}`"


def _key_rows(keys: Mapping[str, Mapping[str, Any]], defaults: Mapping[str, Any] | None = None) -> list[list[str]]:
    rows = []
    for name, meta in keys.items():
        default = _default(defaults[name]) if defaults is not None and name in defaults else ""
        rows.append([f"`{name}`", _TYPE_NAMES[meta["type"]], default, _range(meta), str(meta["doc"])])
    return rows


def _kind_fields(cls: type[Any]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    fields = {f.name: dict(f.metadata) for f in dataclasses.fields(cls.Params)}
    return fields, cls.Params().as_dict()


def reference_markdown() -> str:
    """Markdown describing every key of a suite file: each kind, parameter, type, default, range and meaning.

    Kinds added with :func:`register_method` / :func:`register_defense` appear too.

    Examples:
        >>> text = reference_markdown()
        >>> "### `pgd`" in text and "| `n` | integer | `500` |" in text
        True
    """
    header = ["key", "type", "default", "range", "meaning"]
    lines = [
        "# Suite file reference",
        "",
        "A suite is a TOML file with the sections below. Every key is checked when the file is read;",
        "an unknown key or a bad value is an error naming the key. A suite file that names",
        '`"module:function"` factories or data functions runs that code: treat it like a Python script.',
        "",
        "## `[suite]`",
        "",
        *table(header, _key_rows(SUITE_KEYS, {"seed": 0})),
        "",
        "## `[data]`",
        "",
        *table(header, _key_rows(DATA_KEYS, {"dataset": "mnist", "train": 4000, "test": 1000, "size": 224})),
        "",
        "## `[[models]]`",
        "",
        "Each model needs exactly one of `zoo` or `factory`.",
        "",
        *table(header, _key_rows(MODEL_KEYS)),
        "",
    ]
    for title, registry in (("defenses", DEFENSES), ("methods", METHODS)):
        lines += [f"## `[[{title}]]`", "", "Every entry also takes:", "", *table(header, _key_rows(_SPEC_KEYS)), ""]
        for kind, cls in sorted(registry.items()):
            fields, defaults = _kind_fields(cls)
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            lines += [f"### `{kind}`", "", doc, ""]
            lines += [*table(header, _key_rows(fields, defaults)), ""] if fields else ["No parameters.", ""]
    return "\n".join(lines)


def _schema_of(meta: Mapping[str, Any]) -> dict[str, Any]:
    kind = meta["type"]
    item_kind = {"floats": "float", "ints": "int", "strs": "str"}.get(kind)
    if item_kind:  # the loader refuses an empty list (leave the key out for its default)
        return {"type": "array", "items": _schema_of({**meta, "type": item_kind}), "minItems": 1}
    if kind == "float-or-floats":
        number = _schema_of({**meta, "type": "float"})
        return {"anyOf": [number, {"type": "array", "items": number, "minItems": 1}]}
    out: dict[str, Any] = {"type": {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}[kind]}
    if meta.get("choices") is not None:
        out["enum"] = list(meta["choices"])
    if kind in ("int", "float"):
        if meta.get("lo") is not None:
            out["exclusiveMinimum" if meta.get("lo_open") else "minimum"] = meta["lo"]
        if meta.get("hi") is not None:
            out["exclusiveMaximum" if meta.get("hi_open") else "maximum"] = meta["hi"]
    return out


def _object(keys: Mapping[str, Mapping[str, Any]], required: list[str] | None = None) -> dict[str, Any]:
    props = {name: {**_schema_of(meta), "description": meta["doc"]} for name, meta in keys.items()}
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _models() -> dict[str, Any]:
    """A ``[[models]]`` entry: exactly one of ``zoo`` or ``factory``, each with its own keys (as the loader checks)."""
    entry = _object(MODEL_KEYS)
    entry["properties"]["input_shape"].update(minItems=3, maxItems=3)  # [C, H, W]
    entry["properties"]["bounds"].update(minItems=2, maxItems=2)  # [low, high]
    entry["oneOf"] = [
        {"required": ["zoo"], "propertyNames": {"enum": sorted(_ZOO_KEYS)}},
        {"required": ["factory", "input_shape", "num_classes"], "propertyNames": {"enum": sorted(_FACTORY_KEYS)}},
    ]
    return {"type": "array", "minItems": 1, "items": entry}


def _entries(registry: Mapping[str, type[Any]]) -> dict[str, Any]:
    variants = []
    for kind, cls in sorted(registry.items()):
        fields, defaults = _kind_fields(cls)
        obj = _object({**_SPEC_KEYS, **fields}, ["kind"])
        obj["properties"]["kind"] = {"const": kind, "description": (cls.__doc__ or kind).strip().splitlines()[0]}
        for name, value in defaults.items():
            if value is not None:
                obj["properties"][name]["default"] = value
        variants.append(obj)
    return {"type": "array", "minItems": 1, "items": {"oneOf": variants}}


def json_schema() -> dict[str, Any]:
    """A JSON schema (draft 2020-12) of a suite file, for editors (e.g. Taplo, Even Better TOML).

    Examples:
        >>> schema = json_schema()
        >>> sorted(schema["properties"])
        ['data', 'defenses', 'methods', 'models', 'suite']
    """
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "foolbench suite",
        "type": "object",
        "additionalProperties": False,
        "required": ["models", "methods"],
        "properties": {
            "suite": _object(SUITE_KEYS),
            "data": _object(DATA_KEYS),
            "models": _models(),
            "defenses": _entries(DEFENSES),
            "methods": _entries(METHODS),
        },
    }
