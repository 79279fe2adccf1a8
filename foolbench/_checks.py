"""Argument checks shared by every layer (private).

Each check raises a :mod:`foolbench.errors` exception whose message names the
argument, what was expected and what was received.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from foolbench.errors import InvalidArgumentError, InvalidTypeError

# Values this far outside the bounds still count as inside (float round-off).
BOUNDS_TOLERANCE = 1e-5


def _int_at_least(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise InvalidArgumentError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise when it is not an integer >= ``minimum`` (at least 1).

    ``minimum`` below 1 is kept for old call sites only; use :func:`nonnegative_int` to accept 0.
    """
    return _int_at_least(name, value, minimum)


def nonnegative_int(name: str, value: Any) -> int:
    """Return ``value`` as an int, or raise when it is not an integer >= 0."""
    return _int_at_least(name, value, 0)


def optional_positive_int(name: str, value: Any, *, minimum: int = 1) -> int | None:
    """Like :func:`positive_int` but lets ``None`` through."""
    return None if value is None else positive_int(name, value, minimum=minimum)


SEED_LIMIT = 2**64
"""Seeds are ints in [0, 2**64): the range :meth:`torch.Generator.manual_seed` takes."""


def seed_int(name: str, value: Any) -> int:
    """Return ``value`` as a seed, or raise when it is not an int in [0, 2**64)."""
    number = nonnegative_int(name, value)
    if number >= SEED_LIMIT:
        raise InvalidArgumentError(f"{name} must be an int in [0, 2**64 - 1], got {number}")
    return number


def torch_device(name: str, value: Any) -> torch.device:
    """Return ``value`` as a :class:`torch.device` that exists on this machine, or raise.

    ``None`` means the CPU. A CUDA or MPS device is refused when this build of torch or this
    machine has none (instead of failing later, deep inside the first tensor move).
    """
    if value is None:
        return torch.device("cpu")
    if not isinstance(value, (str, torch.device)):
        raise InvalidTypeError(f"{name} must be a device name such as 'cpu' or 'cuda:0', got {type(value).__name__}")
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise InvalidArgumentError(
            f"{name} must be a torch device such as 'cpu', 'cuda' or 'cuda:1', got {str(value)!r}"
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise InvalidArgumentError(f"{name} is {str(value)!r} but {build}; use 'cpu'")
        if dev.index is not None and dev.index >= count:
            raise InvalidArgumentError(f"{name} is {str(value)!r} but only cuda:0 to cuda:{count - 1} exist")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidArgumentError(f"{name} is {str(value)!r} but MPS is not available here; use 'cpu'")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InvalidArgumentError(
            f"{name} must be 'cpu', 'cuda' or 'mps' (with an optional index), got {str(value)!r}"
        )
    return dev


def class_indices(name: str, items: Any, *, class_names: Sequence[str]) -> list[int]:
    """Turn class indices or class names (mixed freely) into a checked list of indices.

    A string of digits is an index; any other string must equal one class name (case-insensitively,
    ignoring surrounding spaces). A name that several classes share (ImageNet has two "crane") is
    refused with their indices.

    Examples:
        >>> class_indices("classes", ["Goldfish", "0"], class_names=["tench", "goldfish"])
        [1, 0]
    """
    if isinstance(items, (str, int)):
        items = [items]
    if hasattr(items, "tolist") and not isinstance(items, (list, tuple)):  # a tensor or an array, as class_list
        items = items.tolist()
        items = [items] if isinstance(items, int) else items
    lookup: dict[str, list[int]] = {}
    for index, class_name in enumerate(class_names):
        lookup.setdefault(str(class_name).strip().lower(), []).append(index)
    out: list[Any] = []
    for item in items:
        if not isinstance(item, str) or (item.strip().isascii() and item.strip().isdigit()):  # not "²"
            out.append(int(item.strip()) if isinstance(item, str) else item)
            continue
        found = lookup.get(item.strip().lower(), [])
        if not found:
            shown = ", ".join(map(repr, list(class_names)[:5])) + (", ..." if len(class_names) > 5 else "")
            raise InvalidArgumentError(
                f"{name} must hold class indices or class names ({shown}), got unknown name {item!r}"
            )
        if len(found) > 1:
            raise InvalidArgumentError(f"{name} names {item!r}, which classes {found} share; give the index instead")
        out.append(found[0])
    return class_list(name, out, num_classes=len(class_names))


def real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite float inside the given interval, or raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidTypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    lo_txt = "-inf" if low is None else f"{low:g}"
    hi_txt = "inf" if high is None else f"{high:g}"
    interval = f"{'(' if low_open or low is None else '['}{lo_txt}, {hi_txt}{')' if high_open or high is None else ']'}"
    try:
        number = float(value)
    except OverflowError:  # an int past float's range
        raise InvalidArgumentError(
            f"{name} must be a finite number in {interval}, got an integer of {len(str(abs(value)))} digits"
        ) from None
    bad = not math.isfinite(number)
    if low is not None:
        bad = bad or number < low or (low_open and number == low)
    if high is not None:
        bad = bad or number > high or (high_open and number == high)
    if bad:
        raise InvalidArgumentError(f"{name} must be a finite number in {interval}, got {number!r}")
    return number


def choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` when it is one of ``choices``, or raise listing them."""
    options = tuple(choices)
    if value not in options:
        raise InvalidArgumentError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return str(value)


def shape3(name: str, value: Any) -> tuple[int, int, int]:
    """Return ``value`` as a (C, H, W) tuple of positive ints, or raise."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 3:
        raise InvalidArgumentError(f"{name} must be a (channels, height, width) tuple, got {value!r}")
    return (
        positive_int(f"{name}[0]", value[0]),
        positive_int(f"{name}[1]", value[1]),
        positive_int(f"{name}[2]", value[2]),
    )


def images(
    name: str,
    x: Any,
    *,
    shape: tuple[int, int, int] | None = None,
    bounds: tuple[float, float] | None = None,
    allow_empty: bool = False,
) -> torch.Tensor:
    """Check a (B, C, H, W) floating batch: rank, shape, dtype, finiteness and bounds.

    The finiteness and bounds check is one fused min/max pass over the batch.
    """
    if not isinstance(x, torch.Tensor):
        raise InvalidTypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise InvalidTypeError(
            f"{name} must have a floating dtype (e.g. torch.float32), got {x.dtype}; "
            "convert integer images with x.float() / 255"
        )
    if x.dim() != 4:
        expected = "(B, " + ", ".join(map(str, shape)) + ")" if shape else "(B, C, H, W)"
        raise InvalidArgumentError(f"{name} must have shape {expected} (4 dimensions), got {tuple(x.shape)}")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise InvalidArgumentError(
            f"{name} must have shape (B, {shape[0]}, {shape[1]}, {shape[2]}), got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        if allow_empty:
            return x
        raise InvalidArgumentError(f"{name} must hold at least one image, got an empty batch {tuple(x.shape)}")
    lo, hi = torch.aminmax(x.detach())
    lo_v, hi_v = float(lo), float(hi)
    if not (math.isfinite(lo_v) and math.isfinite(hi_v)):
        raise InvalidArgumentError(f"{name} must be finite, got values containing NaN or inf")
    if bounds is not None and (lo_v < bounds[0] - BOUNDS_TOLERANCE or hi_v > bounds[1] + BOUNDS_TOLERANCE):
        raise InvalidArgumentError(
            f"{name} must lie inside the classifier's bounds [{bounds[0]:g}, {bounds[1]:g}], "
            f"got values in [{lo_v:g}, {hi_v:g}]"
        )
    return x


def boolean(name: str, value: Any) -> bool:
    """``value`` when it is True or False; anything else (1, "no", None) is refused naming ``name``.

    Examples:
        >>> boolean("verify", "no")
        Traceback (most recent call last):
        ...
        foolbench.errors.InvalidArgumentError: verify must be True or False, got 'no'
    """
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be True or False, got {value!r}")
    return value


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is in a half-precision dtype (float16, bfloat16), else as it is.

    Attacks compute and return in float32 there: ``x + delta`` and a clamp to the bounds, rounded to
    8 or 11 bits of mantissa, could leave the eps-ball or the bounds they promise.

    Examples:
        >>> at_least_float32(torch.zeros(1, dtype=torch.bfloat16)).dtype, at_least_float32(torch.zeros(1, dtype=torch.float64)).dtype
        (torch.float32, torch.float64)
    """
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def labels(name: str, y: Any, *, batch: int, num_classes: int, device: torch.device | None = None) -> torch.Tensor:
    """Check a (B,) vector of class indices in [0, num_classes) and return it as int64."""
    if isinstance(y, (list, tuple)):
        try:  # an empty list is an empty int64 vector (as_tensor makes it float32)
            y = torch.as_tensor(y, dtype=torch.long) if len(y) == 0 else torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError) as err:
            raise InvalidArgumentError(f"{name} must be a flat list of class indices: {err}") from None
    if not isinstance(y, torch.Tensor):
        raise InvalidTypeError(f"{name} must be a tensor of class indices, got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise InvalidTypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.dim() != 1 or y.shape[0] != batch:
        raise InvalidArgumentError(f"{name} must have shape ({batch},) to match the images, got {tuple(y.shape)}")
    if batch and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise InvalidArgumentError(
            f"{name} must be class indices in [0, {num_classes - 1}], got values in [{int(y.min())}, {int(y.max())}]"
        )
    return y.to(device=device, dtype=torch.long) if device is not None else y.long()


def class_list(name: str, classes: Any, *, num_classes: int) -> list[int]:
    """Check a non-empty list of distinct class indices in [0, num_classes)."""
    if isinstance(classes, torch.Tensor):
        classes = classes.tolist()
    if isinstance(classes, int) and not isinstance(classes, bool):
        classes = [classes]
    if not isinstance(classes, Iterable) or isinstance(classes, str):
        raise InvalidTypeError(f"{name} must be a sequence of class indices, got {type(classes).__name__}")
    out = list(classes)
    if not out:
        raise InvalidArgumentError(f"{name} must name at least one class, got an empty sequence")
    for c in out:
        if isinstance(c, bool) or not isinstance(c, int):
            raise InvalidTypeError(f"{name} must hold int class indices, got {type(c).__name__} {c!r}")
        if not 0 <= c < num_classes:
            raise InvalidArgumentError(f"{name} must hold class indices in [0, {num_classes - 1}], got {c}")
    if len(set(out)) != len(out):
        raise InvalidArgumentError(f"{name} must not repeat a class, got {out}")
    return out


def torch_generator(name: str, value: Any) -> torch.Generator:
    """Return ``value`` when it is a :class:`torch.Generator`; anything else (a seed, None) is refused.

    Examples:
        >>> torch_generator("generator", 0)
        Traceback (most recent call last):
        ...
        foolbench.errors.InvalidTypeError: generator must be a torch.Generator, got int
    """
    if not isinstance(value, torch.Generator):
        raise InvalidTypeError(f"{name} must be a torch.Generator, got {type(value).__name__}")
    return value


def generator(name: str, seed: Any, device: torch.device | str = "cpu") -> torch.Generator:
    """Make a :class:`torch.Generator` from an int seed, or pass a generator through."""
    if isinstance(seed, torch.Generator):
        return seed
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed_int(name, seed))
    return gen


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Seed the global RNGs for a model factory's initialisation, and leave them as found after.

    The CPU generator is seeded and restored; the CUDA generators only where CUDA is already initialised
    (restoring them would initialise it), so a fresh model never reseeds the GPUs for the rest of the
    process, as ``torch.manual_seed`` would. A factory that creates its weights on a GPU before anything
    initialised CUDA gets the GPU's default seed: build them on the CPU (the classifier moves them).
    """
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed_all(seed)
        yield
