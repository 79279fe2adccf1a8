"""Cells as self-contained tasks, and the executors that run them (private).

A :class:`CellTask` is plain, picklable data: the suite configuration, the cell's names, its seed
and digest, the device and the output folder (read for cached models; the cell's resume
checkpoints go in its own scratch folder). :meth:`CellTask.run` rebuilds what it needs in the
process that runs it (once per process) and returns a :class:`CellResult`; only the driver
writes the cell files, reports and results. An executor maps tasks to results in any order.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from foolbench.bench._config import SuiteConfig
from foolbench.bench._registry import METHODS, Context
from foolbench.bench._store import digest

__all__ = ["CellResult", "CellTask", "Executor", "LocalExecutor"]


@dataclass(frozen=True)
class CellTask:
    """One (model, defense, method) cell, as a self-contained task description.

    Attributes:
        config: the whole suite (models, defenses and data are rebuilt from it where the task runs).
        model, defense, method: the cell's names in the suite.
        key: the cell's file key (injective in the names, bounded).
        seed: the cell's seed, derived from the suite seed and the names (not from run order).
        digest: everything that determines the cell's result (configuration, model and data identity).
        out: the output folder (cached trained models are read from it).
        device: the device to run on (None: CPU).
        fresh: drop the cell's resume checkpoint before running.
        progress: show a progress bar inside the cell where it runs.

    Examples:
        >>> import pickle
        >>> task = CellTask(config=None, model="m", defense="none", method="pgd", key="k", seed=1, digest="d", out="o")
        >>> pickle.loads(pickle.dumps(task)) == task
        True
    """

    config: Any
    model: str
    defense: str
    method: str
    key: str
    seed: int
    digest: str
    out: str
    device: str | None = None
    fresh: bool = False
    progress: bool = False

    def run(self) -> CellResult:
        """Run the cell here (building the suite's models and defenses once per process)."""
        ws = workspace(self.config, Path(self.out), self.device)
        cfg: SuiteConfig = self.config
        dspec = next(d for d in cfg.defenses if d.name == self.defense)
        mspec = next(m for m in cfg.methods if m.name == self.method)
        target = ws.target(self.model, dspec)
        scratch = Path(self.out) / "checkpoints" / f"{self.key}-{self.digest}"
        if self.fresh and scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(parents=True, exist_ok=True)
        train, test = ws.data(self.model)
        from tqdm.auto import tqdm

        desc = f"{self.model} / {self.defense} / {self.method}"
        # mininterval=0: the few updates a cell makes are each shown (a fast cell would skip them)
        with tqdm(total=100, desc=desc, unit="%", leave=False, disable=not self.progress, mininterval=0) as bar:

            def advance(fraction: float) -> None:
                bar.update(max(0, min(100, round(100 * fraction))) - bar.n)

            ctx = Context(train, test, self.seed, self.device, scratch, models=ws.models, key=self.key,
                          progress=advance, show_progress=self.progress)  # fmt: skip
            t0 = time.perf_counter()
            output = mspec.build(METHODS).run(target, ctx)
            advance(1.0)
        return CellResult(output.metrics, output.tensors, output.files, round(time.perf_counter() - t0, 2))


@dataclass
class CellResult:
    """What a cell task sends back to the driver.

    Attributes:
        metrics: JSON-ready metrics.
        tensors: tensors kept for the transfer matrices (saved beside the cell).
        files: files to write under the output folder (relative path -> bytes), e.g. image grids.
        seconds: wall time of the run.
    """

    metrics: dict[str, Any]
    tensors: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    seconds: float = 0.0


@runtime_checkable
class Executor(Protocol):
    """Runs cell tasks: ``map(tasks)`` yields ``(task, result or exception)`` for each, in any order.

    An executor never raises for a failing task: it yields the exception (the driver retries a
    failed task once, then reports it). ``KeyboardInterrupt`` propagates.
    """

    def map(self, tasks: Iterable[CellTask]) -> Iterator[tuple[CellTask, CellResult | Exception]]:
        """Run ``tasks``; yield each with its result (or the exception it raised) as it finishes."""
        ...


class LocalExecutor:
    """The default executor: every task in this process, one after another, in the given order.

    Examples:
        >>> LocalExecutor()
        LocalExecutor()
    """

    def map(self, tasks: Iterable[CellTask]) -> Iterator[tuple[CellTask, CellResult | Exception]]:
        """Run each task in order."""
        for task in tasks:
            try:
                yield task, task.run()
            except Exception as err:  # noqa: BLE001, PERF203 - a failing cell is reported, the others go on
                yield task, err

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_WORKSPACES: dict[tuple[str, str, str | None], Any] = {}


def workspace(cfg: SuiteConfig, out: Path, device: str | None, *, fresh: bool = False, new: bool = False) -> Any:
    """The process's :class:`Workspace` for a suite (built on first use, or anew with ``new=True``)."""
    from dataclasses import asdict

    from foolbench.bench._workspace import Workspace, factory_stamps

    # the factories' files too: a worker kept between two runs of an edited suite builds its models anew
    key = (digest([asdict(cfg), factory_stamps(cfg)]), str(out.resolve()), device)
    if new or key not in _WORKSPACES:
        _WORKSPACES.clear()  # one suite at a time per process: do not keep old models alive
        _WORKSPACES[key] = Workspace(cfg, out, device, fresh=fresh)
    return _WORKSPACES[key]


def forget_workspaces() -> None:
    """Drop this process's workspaces (their models and data)."""
    _WORKSPACES.clear()
