"""File keys, digests and validation of cached cells (private).

Every cached artefact of a suite (a cell's JSON and tensors, a search checkpoint, a trained or
defended model) is found by a key that is injective in the raw names (a readable prefix plus a
short hash of the names) and stored with a digest of everything that determines it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["cell_seed", "digest", "file_key", "metrics_problem", "tensors_digest", "validate_cell"]

CELL_KEYS = {
    "key": str,
    "model": str,
    "defense": str,
    "defense_kind": str,
    "method": str,
    "method_kind": str,
    "params": dict,
    "metrics": dict,
    "digest": str,
}


def file_key(*names: str) -> str:
    """A bounded, file-safe key that is injective in ``names`` (up to a 64-bit hash collision).

    Examples:
        >>> file_key("a/b") != file_key("a-b"), len(file_key("x" * 300)) <= 60
        (True, True)
    """
    readable = "__".join(re.sub(r"[^A-Za-z0-9_.=,-]+", "-", n)[:24] for n in names)[:44]
    raw = json.dumps(list(names), ensure_ascii=False).encode("utf-8")
    return f"{readable}-{hashlib.sha256(raw).hexdigest()[:16]}"


def digest(obj: Any) -> str:
    """A 16-hex-digit digest of a JSON-ready object (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def bytes_digest(data: bytes) -> str:
    """A 16-hex-digit digest of a file's bytes (a cell's image grid).

    Examples:
        >>> bytes_digest(b"png") == bytes_digest(b"png") != bytes_digest(b"PNG")
        True
    """
    return hashlib.sha256(data).hexdigest()[:16]


def tensors_digest(tensors: Any) -> str:
    """A digest of tensors (a state_dict, or a sequence of tensors): names, dtypes, shapes and bytes in order.

    Examples:
        >>> a = {"w": torch.zeros(2)}
        >>> tensors_digest(a) == tensors_digest({"w": torch.zeros(2)}) != tensors_digest({"w": torch.ones(2)})
        True
    """
    items = tensors.items() if isinstance(tensors, dict) else enumerate(tensors)
    h = hashlib.sha256()
    for name, t in items:
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{t.numel()}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def cell_seed(seed: int, *names: str) -> int:
    """The seed of one cell: from the suite seed and the cell's names only, never from run order."""
    raw = json.dumps([seed, *names], ensure_ascii=False).encode("utf-8")
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big") >> 1


def _finite(value: Any, where: str) -> str | None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, int | float):
        return None if math.isfinite(value) else f"{where} is {value!r}, not finite"
    if isinstance(value, list):
        return next((e for i, v in enumerate(value) if (e := _finite(v, f"{where}[{i}]"))), None)
    if isinstance(value, dict):
        return next((e for k, v in value.items() if (e := _finite(v, f"{where}.{k}"))), None)
    return f"{where} has type {type(value).__name__}"


def _rate(value: Any, where: str) -> str | None:
    if isinstance(value, dict):
        return next((e for k, v in value.items() if (e := _rate(v, f"{where}.{k}"))), None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        return f"{where} must be a fraction in [0, 1], got {value!r}"
    return None


def validate_cell(path: Path, expected: dict[str, Any], rates: tuple[str, ...]) -> tuple[dict[str, Any] | None, str]:
    """Read a cached cell; returns ``(record, "")`` if usable, else ``(None, why)`` (``why`` empty: stale).

    A cell is usable when it is UTF-8 JSON holding an object with every field of the schema, the
    expected key, names and digest, content that matches its checksum (where it has one: cells
    written by foolbench 0.1.0 have none), finite metrics and fractions in [0, 1].
    """
    try:
        stored = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"unreadable ({type(err).__name__}: {str(err)[:80]})"
    if not isinstance(stored, dict):
        return None, f"holds a JSON {type(stored).__name__}, not an object"
    for name, typ in CELL_KEYS.items():
        if not isinstance(stored.get(name), typ):
            return None, f"field {name!r} is missing or not a {typ.__name__}"
    if stored["digest"] != expected["digest"]:
        return None, ""  # another configuration: stale, recomputed without a warning
    checksum = stored.get("checksum")  # cells written by foolbench 0.1.0 have none
    if checksum is not None and checksum != digest({k: v for k, v in stored.items() if k != "checksum"}):
        return None, "was edited or damaged: its content does not match its checksum"
    for name in ("key", "model", "defense", "method", "method_kind", "defense_kind"):
        if stored[name] != expected[name]:
            return None, f"field {name!r} is {stored[name]!r}, expected {expected[name]!r}"
    problem = metrics_problem(stored["metrics"], rates)
    return (None, problem) if problem else (stored, "")


def metrics_problem(metrics: dict[str, Any], rates: tuple[str, ...]) -> str | None:
    """What is wrong with a cell's metrics (a non-finite number, a fraction outside [0, 1]), or None."""
    problem = _finite(metrics, "metrics")
    return problem or next((e for r in rates if r in metrics and (e := _rate(metrics[r], f"metrics.{r}"))), None)
