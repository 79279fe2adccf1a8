"""Independent runs (repeated seeds, the searches of a retraining round) through a pluggable map."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["MapExecutor", "SerialMap"]

T = TypeVar("T")


@runtime_checkable
class MapExecutor(Protocol):
    """Runs ``fn`` on every item, possibly elsewhere (other processes, GPUs, machines), results in order.

    ``fn`` and the items must be picklable for executors that leave the process; each call must be
    self-contained (its own seed), so the results do not depend on where or in which order they run.
    ``map`` may return a list or an iterator (as the executors of :mod:`concurrent.futures` do).
    """

    def map(self, fn: Callable[[Any], T], items: Sequence[Any]) -> Iterable[T]: ...


class SerialMap:
    """The default: every call in this process, one after another.

    Examples:
        >>> SerialMap().map(abs, [-1, 2, -3])
        [1, 2, 3]
    """

    def map(self, fn: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
        return [fn(item) for item in items]

    def __repr__(self) -> str:
        return "SerialMap()"
