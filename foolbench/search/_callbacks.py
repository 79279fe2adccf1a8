"""Callbacks around a search's ``run()``: budgets, targets, progress, checkpoints and loggers.

A run is a short loop over generations; everything else subscribes to it. Each
callback may stop the run before a generation (:meth:`Callback.should_stop`),
observe each finished generation (:meth:`Callback.on_generation`) and clean up
at the end, interrupted or not (:meth:`Callback.on_end`). Callbacks that read
tensors back to the host do it only every ``every`` generations, so a CUDA run
is not synchronised every generation.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foolbench import _checks, _io
from foolbench.errors import InvalidTypeError

if TYPE_CHECKING:
    from foolbench.search._evolution import Evolution

__all__ = [
    "Budget",
    "CSVLogger",
    "Callback",
    "Checkpointer",
    "JSONLLogger",
    "ProgressBar",
    "StopAtTarget",
    "TensorBoardLogger",
]


def _path(name: str, value: Any) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise InvalidTypeError(f"{name} must be a file path (str or os.PathLike), got {value!r}")
    return Path(value)


class Callback:
    """Base class for run callbacks: override any of the hooks (all do nothing here).

    Examples:
        >>> import foolbench as fb
        >>> class Count(fb.search.Callback):
        ...     def __init__(self):
        ...         self.calls = 0
        ...     def on_generation(self, search):
        ...         self.calls += 1
        >>> search = fb.search.MAPElites(fb.models.lenet_mnist(), fb.encodings.DirectEncoding((1, 28, 28)),
        ...                              batch_size=16, seed=0)
        >>> counter = Count()
        >>> _ = search.run(generations=3, progress=False, callbacks=[counter])
        >>> counter.calls
        3
    """

    def on_start(self, search: Evolution) -> None:
        """Called once before the first generation of a ``run()``."""

    def should_stop(self, search: Evolution) -> bool:
        """Asked before every generation; True ends the run."""
        return False

    def on_generation(self, search: Evolution) -> None:
        """Called after every finished generation."""

    def on_end(self, search: Evolution, *, interrupted: bool) -> None:
        """Called once when the run ends; ``interrupted`` when an exception (e.g. Ctrl-C) ends it."""


class Budget(Callback):
    """Stop once the search has spent a budget (counted from its start, resumed runs included).

    A generation is never cut short: the run stops at the first generation
    boundary at or past ``max_evaluations``, so a run extended with a larger
    budget is the same as one run with that budget.

    Args:
        max_evaluations: stop at or after this many evaluations.
        generations: stop after this many generations.
        max_seconds: stop once the search has computed this long.

    Examples:
        >>> Budget(max_evaluations=100)
        Budget(max_evaluations=100, generations=None, max_seconds=None)
    """

    def __init__(
        self, *, max_evaluations: int | None = None, generations: int | None = None, max_seconds: float | None = None
    ) -> None:
        self.max_evaluations = _checks.optional_positive_int("max_evaluations", max_evaluations)
        self.generations = _checks.optional_positive_int("generations", generations)
        self.max_seconds = (
            None if max_seconds is None else _checks.real("max_seconds", max_seconds, low=0.0, low_open=True)
        )

    def __repr__(self) -> str:
        return (
            f"Budget(max_evaluations={self.max_evaluations}, generations={self.generations}, "
            f"max_seconds={self.max_seconds})"
        )

    def should_stop(self, search: Evolution) -> bool:
        return (
            (self.max_evaluations is not None and search.evaluations >= self.max_evaluations)
            or (self.generations is not None and search.generation >= self.generations)
            or (self.max_seconds is not None and search.seconds >= self.max_seconds)
        )


class StopAtTarget(Callback):
    """Stop once every target class has an image at or above ``confidence``.

    The confidences are those the search's :meth:`~Evolution.result` reports: with a classifier at reduced
    precision or compiled, its float32 reference's (see :meth:`Evolution.reported_at`), so a run that stops
    here returns a result whose ``fooled(confidence)`` is all True.

    Args:
        confidence: the target probability, in (0, 1].
        every: check every this many generations (each check reads one bool from the device; with a fast
            model whose fast scores all meet the target, the float32 re-scoring of the elites as well, once
            per change of the elites).

    Examples:
        >>> StopAtTarget(0.9999)
        StopAtTarget(confidence=0.9999, every=1)
    """

    def __init__(self, confidence: float, *, every: int = 1) -> None:
        self.confidence = _checks.real("confidence", confidence, low=0.0, high=1.0, low_open=True)
        self.every = _checks.positive_int("every", every)

    def __repr__(self) -> str:
        return f"StopAtTarget(confidence={self.confidence:g}, every={self.every})"

    def should_stop(self, search: Evolution) -> bool:
        if search.generation == 0 or search.generation % self.every:
            return False
        return search.reported_at(self.confidence)  # the float32 confidences a result reports, at any precision


class ProgressBar(Callback):
    """A tqdm bar over evaluations, with the median best confidence every ``every`` generations.

    Args:
        total: evaluations the bar counts to (None: open-ended).
        every: generations between reads of the median confidence.
        desc: the bar's label.
    """

    def __init__(self, *, total: int | None = None, every: int = 1, desc: str = "evolution") -> None:
        self.total = _checks.optional_positive_int("total", total)
        self.every = _checks.positive_int("every", every)
        self.desc = desc
        self._bar: Any = None
        self._shown = 0

    def on_start(self, search: Evolution) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.total, desc=self.desc, unit="eval", dynamic_ncols=True, leave=False)
        self._shown = search.evaluations if self.total is None else min(search.evaluations, self.total)
        self._bar.update(self._shown)

    def on_generation(self, search: Evolution) -> None:
        if self._bar is None or search.generation % self.every:
            return
        now = search.evaluations if self.total is None else min(search.evaluations, self.total)
        self._bar.update(now - self._shown)
        self._shown = now
        self._bar.set_postfix(median=f"{float(search.best_log_probs().median().exp()):.6f}", refresh=False)

    def on_end(self, search: Evolution, *, interrupted: bool) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Checkpointer(Callback):
    """Save the search atomically every ``every`` generations, at the end, and when interrupted.

    A batch that was asked for but not evaluated is never saved: an interrupted
    run resumed from the file equals an uninterrupted one, bit for bit.

    Args:
        path: the checkpoint file.
        every: generations between saves.
    """

    def __init__(self, path: str | os.PathLike[str], *, every: int = 50) -> None:
        self.path = _path("path", path)
        self.every = _checks.positive_int("every", every)
        self._saved_at = -1

    def __repr__(self) -> str:
        return f"Checkpointer({str(self.path)!r}, every={self.every})"

    def on_start(self, search: Evolution) -> None:
        self._saved_at = search.generation

    def on_generation(self, search: Evolution) -> None:
        if search.generation - self._saved_at >= self.every:
            self._save(search)

    def on_end(self, search: Evolution, *, interrupted: bool) -> None:
        # a search torn inside a generation's insert keeps its last whole checkpoint, and so does one stopped
        # while the callbacks were seeing its last generation (a logger may not have logged it: the resume redoes it)
        if search.generation != self._saved_at and not any(
            getattr(search, flag, False) for flag in ("_torn", "_unobserved")
        ):
            self._save(search)

    def _save(self, search: Evolution) -> None:
        search.save_checkpoint(self.path)
        self._saved_at = search.generation


def _summary(search: Evolution) -> dict[str, Any]:
    conf = search.best_log_probs().cpu().double().exp()
    return {
        "generation": search.generation,
        "evaluations": search.evaluations,
        "seconds": round(search.seconds, 6),
        "median_confidence": float(conf.median()),
        "min_confidence": float(conf.min()),
        "max_confidence": float(conf.max()),
    }


class JSONLLogger(Callback):
    """Append one JSON line per ``every`` generations: generation, evaluations, seconds, confidences.

    Lines already in the file for generations after the run's start (a resumed run's
    checkpointed generation) are dropped first, as are lines that do not parse, so a
    resumed run does not log a generation twice.

    Args:
        path: the ``.jsonl`` file (appended to).
        every: generations between lines.
        per_class: also log each target class's best confidence.
    """

    def __init__(self, path: str | os.PathLike[str], *, every: int = 1, per_class: bool = False) -> None:
        self.path = _path("path", path)
        self.every = _checks.positive_int("every", every)
        self.per_class = _checks.boolean("per_class", per_class)

    def on_start(self, search: Evolution) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            kept = [line for line in self.path.read_text("utf-8").splitlines() if _before(line, search.generation)]
            _io.write_text(self.path, "".join(f"{line}\n" for line in kept))  # atomic: a crash keeps the old log

    def on_generation(self, search: Evolution) -> None:
        if search.generation % self.every:
            return
        row = _summary(search)
        if self.per_class:
            row["confidence"] = search.best_log_probs().cpu().double().exp().tolist()
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def _before(line: str, generation: int) -> bool:
    try:
        return int(json.loads(line)["generation"]) <= generation
    except (ValueError, KeyError, TypeError):
        return False


class CSVLogger(Callback):
    """Write generation, evaluations, seconds and median/min/max confidence to a CSV file.

    Args:
        path: the ``.csv`` file (rewritten at each run's start with the rows before it kept).
        every: generations between rows.
    """

    _FIELDS = ("generation", "evaluations", "seconds", "median_confidence", "min_confidence", "max_confidence")

    def __init__(self, path: str | os.PathLike[str], *, every: int = 1) -> None:
        self.path = _path("path", path)
        self.every = _checks.positive_int("every", every)

    def on_start(self, search: Evolution) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, str]] = []
        if self.path.is_file():
            with self.path.open(newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if self._whole(r)]
            rows = [r for r in rows if int(r["generation"]) <= search.generation]
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self._FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        _io.write_text(self.path, text.getvalue())  # atomic: a crash keeps the old log

    @classmethod
    def _whole(cls, row: dict[str, Any]) -> bool:
        """A row with every field a number (a row torn by a crash mid-write is not, and is dropped)."""
        if not str(row.get("generation") or "").isdigit():
            return False
        try:
            for key in cls._FIELDS:
                float(row[key])
        except (KeyError, TypeError, ValueError):  # a field missing (None) or cut short
            return False
        return None not in row  # no field too many

    def on_generation(self, search: Evolution) -> None:
        if search.generation % self.every:
            return
        with self.path.open("a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=self._FIELDS, extrasaction="ignore").writerow(_summary(search))


class TensorBoardLogger(Callback):
    """Scalars (median/min/max confidence, evaluations per second) to TensorBoard, when it is installed.

    Args:
        log_dir: the event folder.
        every: generations between points.

    Raises:
        MissingDependencyError: neither ``tensorboard`` nor ``torch.utils.tensorboard`` can be imported.
    """

    def __init__(self, log_dir: str | os.PathLike[str], *, every: int = 10) -> None:
        from foolbench.errors import MissingDependencyError

        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise MissingDependencyError("TensorBoardLogger needs tensorboard: pip install tensorboard") from err
        self.every = _checks.positive_int("every", every)
        self._writer = SummaryWriter(log_dir=str(_path("log_dir", log_dir)))
        self._last: tuple[int, float] | None = None

    def on_generation(self, search: Evolution) -> None:
        if search.generation % self.every:
            return
        row = _summary(search)
        for key in ("median_confidence", "min_confidence", "max_confidence"):
            self._writer.add_scalar(key, row[key], search.evaluations)
        if self._last is not None and search.seconds > self._last[1]:  # over the generations since the last point
            rate = (search.evaluations - self._last[0]) / (search.seconds - self._last[1])
            self._writer.add_scalar("evaluations_per_second", rate, search.evaluations)
        self._last = (search.evaluations, search.seconds)

    def on_start(self, search: Evolution) -> None:
        self._last = (search.evaluations, search.seconds)

    def on_end(self, search: Evolution, *, interrupted: bool) -> None:
        self._writer.flush()
        self._writer.close()
