"""Checkpoints shared by searches and retraining: format tag, version, configuration, checksum (private).

A checkpoint is a dict ``{"format", "version", "config", "checksum", "payload"}``
saved atomically and loaded with ``weights_only=True``. The checksum is a SHA-256
over the configuration and every tensor's dtype, shape and bytes, so a flipped
bit or a hand-edited value is refused with :class:`CheckpointError` instead of
being resumed from. Field checks (:func:`field`) name what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from foolbench import _io
from foolbench.errors import CheckpointError

__all__ = ["check", "digest", "field", "genomes", "load", "number", "save", "snapshot", "wrap"]


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=str):
            h.update(f"K{key!s}".encode())
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
    else:
        h.update(f"V{type(obj).__name__}:{json.dumps(obj, sort_keys=True, default=str)}".encode())


def digest(obj: Any) -> str:
    """SHA-256 hex digest of nested dicts/lists of tensors and plain values (order of dict keys ignored).

    Examples:
        >>> import torch
        >>> digest({"a": torch.zeros(2), "b": 1}) == digest({"b": 1, "a": torch.zeros(2)})
        True
        >>> digest({"a": torch.zeros(2)}) == digest({"a": torch.zeros(2, dtype=torch.float64)})
        False
    """
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def wrap(*, fmt: str, version: int, config: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint dict: format tag, version, configuration, checksum and payload."""
    return {
        "format": fmt,
        "version": version,
        "config": config,
        "checksum": digest([config, payload]),
        "payload": payload,
    }


def save(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Atomically write a checkpoint dict made by :func:`wrap`."""
    return _io.save_torch(path, state)


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True`` (nothing in the file executes)."""
    return _io.load_torch(path)


def check(
    state: dict[str, Any], *, fmt: str, version: int, config: Any, source: str, added: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Check a checkpoint dict made by :func:`wrap` and return its payload.

    ``added`` names configuration keys newer than the format: a checkpoint written before one existed
    lacks it, and is compared on the other keys.

    Raises:
        CheckpointError: not of this format and version, written by another
            configuration, or its content does not match its checksum.
    """
    _io.check_state(state, fmt=fmt, version=version, path=source)
    stored = state.get("config")
    if isinstance(config, dict) and isinstance(stored, dict) and (older := [k for k in added if k not in stored]):
        config = {k: v for k, v in config.items() if k not in older}
    if state.get("config") != config:
        raise CheckpointError(
            f"{source!r} was written by another configuration ({_differences(state.get('config'), config)}); "
            "use another checkpoint path, or delete it to start afresh"
        )
    payload = state.get("payload")
    if not isinstance(payload, dict):
        raise CheckpointError(f"{source!r} has no payload dict")
    if state.get("checksum") != digest([config, payload]):
        raise CheckpointError(f"{source!r} is damaged or was edited: its content does not match its checksum")
    return payload


def snapshot(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU copy of ``tensor`` sharing no memory with it, for a state dict (``.cpu()`` of a CPU tensor is itself).

    A search updates its archive in place, so a state dict of views would change as the search goes on.
    """
    return tensor.detach().to("cpu", copy=True)


def genomes(encoding: Any, state: Any, *, device: torch.device, count: int, source: str) -> Any:
    """Rebuild ``count`` genomes from their saved tensors, naming the file when they do not fit."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source!r} genomes must be a dict of tensors")
    try:
        loaded = encoding.genomes_from_state({k: v.to(device, copy=True) for k, v in state.items()})  # never shared
    except CheckpointError as err:
        raise CheckpointError(f"{source!r}: {err}") from err
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
        raise CheckpointError(f"{source!r} genomes do not fit {encoding!r}: {err}") from err
    if len(loaded) != count:
        raise CheckpointError(f"{source!r} holds {len(loaded)} genomes, expected {count}")
    if isinstance(loaded, torch.Tensor) and not bool(((loaded >= 0) & (loaded <= 1)).all()):
        raise CheckpointError(f"{source!r} genomes hold values outside [0, 1] (or NaN)")
    validate = getattr(encoding, "validate", None)
    if callable(validate):
        try:
            validate(loaded)
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{source!r} genomes are not valid: {err}") from err
    return loaded


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _differences(saved: Any, current: Any) -> str:
    """``key: saved X, current Y`` for each top-level setting that differs."""
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return f"saved {_short(saved)}, current {_short(current)}"
    keys = sorted(set(saved) | set(current), key=str)
    missing = "(none)"
    return "; ".join(
        f"{k}: saved {_short(saved.get(k, missing))}, current {_short(current.get(k, missing))}"
        for k in keys
        if saved.get(k, missing) != current.get(k, missing)
    )


def field(
    state: dict[str, Any],
    key: str,
    *,
    source: str,
    shape: tuple[int, ...] | None = None,
    dtype: torch.dtype | None = None,
    finite: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> torch.Tensor:
    """Return ``state[key]`` as a tensor after checking its shape, dtype, finiteness and range.

    ``shape`` may hold -1 for "any length" in a dimension. ``low``/``high`` are
    inclusive. NaN is always refused; with ``finite`` False, infinite values are checked against
    ``low``/``high`` like any other (-inf passes no ``low``).
    """
    if key not in state:
        raise CheckpointError(f"{source!r} lacks the field {key!r}")
    value = state[key]
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{source!r} field {key!r} must be a tensor, got {type(value).__name__}")
    if dtype is not None and value.dtype != dtype:
        raise CheckpointError(f"{source!r} field {key!r} must have dtype {dtype}, got {value.dtype}")
    if shape is not None and (
        value.dim() != len(shape) or any(s not in (-1, v) for s, v in zip(shape, value.shape, strict=True))
    ):
        raise CheckpointError(f"{source!r} field {key!r} must have shape {shape}, got {tuple(value.shape)}")
    if value.is_floating_point() and (
        bool(torch.isnan(value).any()) or (finite and not bool(torch.isfinite(value).all()))
    ):
        raise CheckpointError(f"{source!r} field {key!r} holds NaN or infinite values")
    if value.numel() and low is not None and bool((value < low).any()):
        raise CheckpointError(f"{source!r} field {key!r} holds values below {low}")
    if value.numel() and high is not None and bool((value > high).any()):
        raise CheckpointError(f"{source!r} field {key!r} holds values above {high}")
    return value


def number(state: dict[str, Any], key: str, *, source: str, kind: type, low: float = 0.0) -> Any:
    """Return ``state[key]`` checked to be an int (not bool) or finite float >= ``low``."""
    if key not in state:
        raise CheckpointError(f"{source!r} lacks the field {key!r}")
    value = state[key]
    ok = isinstance(value, int) and not isinstance(value, bool) if kind is int else isinstance(value, (int, float))
    finite = ok and (isinstance(value, int) or math.isfinite(value))  # an int is (isfinite overflows past 1e308)
    if not ok or isinstance(value, bool) or not finite or value < low:
        raise CheckpointError(f"{source!r} field {key!r} must be a {kind.__name__} >= {low:g}, got {value!r}")
    return kind(value)
