"""Ray executor: a suite's cells as Ray tasks (optional extra ``foolbench[ray]``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from foolbench import _checks
from foolbench.bench import CellResult, CellTask
from foolbench.distributed._ray import _first_line, connect, gpu_share
from foolbench.errors import InvalidArgumentError

__all__ = ["RayExecutor", "RayMap"]


T = TypeVar("T")


def _call(fn: Callable[[Any], T], item: Any, threads: int | None) -> T:
    """``fn(item)`` on a worker, with torch set to ``threads`` threads."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return fn(item)


class _RayTasks:
    """Resources per task (checked against the cluster) and the remote function that runs one."""

    def __init__(self, *, address: str | None, num_cpus: float, num_gpus: float, threads: int | None) -> None:
        self.num_cpus = _checks.real("num_cpus", num_cpus, low=0.0)
        self.num_gpus = gpu_share(num_gpus)
        self.threads = _checks.optional_positive_int("threads", threads) or max(1, int(self.num_cpus))
        self.address = address
        self._ray = connect(address)
        have = self._ray.cluster_resources()
        if self.num_cpus > float(have.get("CPU", 0)) or self.num_gpus > float(have.get("GPU", 0)):
            raise InvalidArgumentError(
                f"each task asks for num_cpus={self.num_cpus:g}, num_gpus={self.num_gpus:g}; the cluster has "
                f"{float(have.get('CPU', 0)):g} CPUs and {float(have.get('GPU', 0)):g} GPUs"
            )
        self._remote = self._ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0)(_call)


def check_cell_device(
    device: Any, num_gpus: float, *, device_name: str = "device", gpus_name: str = "num_gpus"
) -> None:
    """Refuse a cell device that does not match the GPUs Ray gives each cell task.

    A cell computes on its task's ``device`` whatever Ray assigned it: a CUDA device with no GPU per task
    puts every concurrent cell on the first GPU, outside Ray's scheduling; a GPU per task with a CPU device
    reserves the GPU and leaves it unused.

    Raises:
        InvalidArgumentError: a CUDA device with ``num_gpus=0``, or ``num_gpus > 0`` with a CPU device, or a
            CUDA index past the GPUs a task sees (``cuda:1`` with ``num_gpus=1``).

    Examples:
        >>> check_cell_device("cuda", 0.5), check_cell_device(None, 0)
        (None, None)
    """
    import torch

    kind = torch.device(device or "cpu").type
    if kind == "cuda" and num_gpus == 0:
        raise InvalidArgumentError(
            f"{device_name} {str(device)!r} needs a GPU per Ray task ({gpus_name} > 0): with {gpus_name}=0 Ray assigns "
            "the cells no GPU and every concurrent cell would compute on the first one"
        )
    index = torch.device(device or "cpu").index
    if kind == "cuda" and num_gpus > 0 and index is not None and index >= max(1, math.ceil(num_gpus)):
        raise InvalidArgumentError(
            f"{device_name} {str(device)!r}: a Ray task with {gpus_name}={num_gpus:g} sees its GPU as cuda:0 "
            f"(and no cuda:{index}); give {device_name} 'cuda'"
        )
    if kind != "cuda" and num_gpus > 0:
        raise InvalidArgumentError(
            f"{gpus_name}={num_gpus:g} reserves a GPU for each Ray task, but the cells compute on "
            f"{device_name} {str(device or 'cpu')!r}: use a CUDA {device_name} or {gpus_name}=0"
        )


class CellFailed(RuntimeError):
    """A cell failed on a Ray worker (its error message kept, its traceback left on the worker)."""


class RayExecutor(_RayTasks):
    """Run suite cells as Ray tasks, each with the resources it needs; results come back as they finish.

    The driver (``run_suite``) alone writes the output folder: a worker only returns its cell's
    results (and writes the cell's own resume checkpoints, so workers on other machines need the
    output folder on a shared filesystem to resume a half-done cell). A task whose worker dies or
    raises is yielded as an exception; ``run_suite`` retries it once, then reports it.

    Args:
        address: the cluster (see :func:`foolbench.distributed.connect`): ``"auto"``, ``"local"`` or an address.
        num_cpus: CPUs per cell.
        num_gpus: GPUs per cell (a fraction shares a GPU between cells; above 1, a whole number). A cell
            computes on the suite's device whatever Ray assigned it: give a CUDA suite ``num_gpus > 0`` and a
            CPU suite ``num_gpus=0`` (:meth:`map` refuses the other pairs).
        threads: torch threads per cell (default: ``num_cpus`` rounded down, at least 1).

    Raises:
        MissingDependencyError: Ray is not installed.
        InvalidArgumentError: bad resources, an unreachable cluster, more per cell than the cluster has; in
            :meth:`map`, a suite device that does not match ``num_gpus``.

    Examples:
        >>> from foolbench.distributed import RayExecutor
        >>> RayExecutor.__name__
        'RayExecutor'
    """

    def __init__(
        self, *, address: str | None = "auto", num_cpus: float = 1, num_gpus: float = 0, threads: int | None = None
    ) -> None:
        super().__init__(address=address, num_cpus=num_cpus, num_gpus=num_gpus, threads=threads)

    def __repr__(self) -> str:
        return (
            f"RayExecutor(address={self.address!r}, num_cpus={self.num_cpus:g}, num_gpus={self.num_gpus:g}, "
            f"threads={self.threads})"
        )

    def map(self, tasks: Iterable[CellTask]) -> Iterator[tuple[CellTask, CellResult | Exception]]:
        """Submit every task at once; yield each with its result (or its error) as it finishes.

        Raises:
            InvalidArgumentError: before any task is submitted, a task whose device does not match
                ``num_gpus`` (see :func:`check_cell_device`).
        """
        ray = self._ray
        tasks = list(tasks)
        for task in tasks:
            check_cell_device(task.device, self.num_gpus, device_name="run_suite's device")
        pending = {self._remote.remote(CellTask.run, task, self.threads): task for task in tasks}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                ref = done[0]
                task = pending.pop(ref)
                yield task, self._result(ref)
        finally:
            for ref in pending:  # interrupted: do not leave cells running on the cluster
                ray.cancel(ref, force=True)

    def _result(self, ref: Any) -> CellResult | Exception:
        try:
            result: CellResult = self._ray.get(ref)
        except Exception as err:  # noqa: BLE001 - a failing cell is reported, the others go on
            return CellFailed(_first_line(err))
        return result


class RayMap(_RayTasks):
    """Independent runs as Ray tasks: a :class:`~foolbench.search.MapExecutor` for repeated seeds and the
    fresh searches of a retraining round (``FoolingClassRetraining(..., executor=RayMap())``).

    Each call is one task with ``num_cpus`` / ``num_gpus``; results come back in the items' order, so
    the caller sees the same list as with :class:`~foolbench.search.SerialMap`.

    Args:
        address: the cluster (see :func:`foolbench.distributed.connect`).
        num_cpus: CPUs per call.
        num_gpus: GPUs per call (a fraction shares a GPU).
        threads: torch threads per call (default: ``num_cpus`` rounded down, at least 1).

    Raises:
        MissingDependencyError: Ray is not installed.
        InvalidArgumentError: bad resources, an unreachable cluster, more per call than the cluster has.
        WorkerError: a call failed on its worker.
    """

    def __init__(
        self, *, address: str | None = "auto", num_cpus: float = 1, num_gpus: float = 0, threads: int | None = None
    ) -> None:
        super().__init__(address=address, num_cpus=num_cpus, num_gpus=num_gpus, threads=threads)

    def __repr__(self) -> str:
        return f"RayMap(num_cpus={self.num_cpus:g}, num_gpus={self.num_gpus:g})"

    def map(self, fn: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
        """Run ``fn(item)`` for every item as Ray tasks; the results in the items' order."""
        from foolbench.distributed._ray import WorkerError

        refs: list[Any] = []
        try:
            refs.extend(self._remote.remote(fn, item, self.threads) for item in items)
            try:
                results: list[T] = list(self._ray.get(refs))
            except Exception as err:
                raise WorkerError(f"a run failed on a Ray worker: {_first_line(err)}") from err
        except BaseException:  # a failed run, or Ctrl-C while waiting: do not leave the others on the cluster
            for ref in refs:
                self._ray.cancel(ref, force=True)
            raise
        return results
