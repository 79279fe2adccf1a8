from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from foolbench.bench import CellResult, CellTask, Executor, LocalExecutor, parse_config, run_suite


class ReversedPickling(LocalExecutor):
    """Runs the tasks in reverse order, each after a pickle round trip in a fresh workspace (as a worker would)."""

    def map(self, tasks: Iterable[CellTask]) -> Iterator[tuple[CellTask, CellResult | Exception]]:
        from foolbench.bench import _executor

        for task in reversed(list(tasks)):
            _executor._WORKSPACES.clear()  # nothing built by the driver is shared: the task rebuilds what it needs
            copy = pickle.loads(pickle.dumps(task))
            yield task, copy.run()


def suite() -> dict[str, Any]:
    return {
        "suite": {"seed": 3},
        "data": {"dataset": "mnist", "train": 120, "test": 60},
        "models": [
            {"zoo": "lenet-mnist"},
            {
                "name": "mlp",
                "factory": "foolbench.bench.factories:mlp",
                "input_shape": [1, 28, 28],
                "num_classes": 10,
                "train_epochs": 1,
            },
        ],
        "defenses": [{"kind": "none"}, {"kind": "bit-depth", "bits": 2}],
        "methods": [
            {"kind": "random", "n": 16},
            {"kind": "map-elites", "max_evaluations": 256, "classes": [0, 1]},
            {"kind": "pgd", "eps": [0.1, 0.3], "n": 24, "steps": 3},
            {"kind": "uap", "fit": 40, "held_out": 40, "max_passes": 1},
        ],
    }


def values(res: dict[str, Any]) -> Any:
    timeless = {"seconds", "wall_seconds"}
    cells = {c["key"]: {k: v for k, v in c.items() if k not in timeless} for c in res["cells"]}
    for c in cells.values():
        c["metrics"] = {k: v for k, v in c["metrics"].items() if k not in timeless}
    return json.dumps([cells, res["clean"], res["transfer"]], sort_keys=True)


def test_results_do_not_depend_on_the_executor_or_the_order(tmp_path: Path) -> None:
    local = run_suite(parse_config(suite()), out=tmp_path / "a", progress=False)
    other = run_suite(parse_config(suite()), out=tmp_path / "b", progress=False, executor=ReversedPickling())
    assert not local["failed"] and len(local["cells"]) == 2 * 2 * 4
    assert values(local) == values(other)
    assert [c["key"] for c in local["cells"]] == [c["key"] for c in other["cells"]]  # report order is the suite's
    assert isinstance(LocalExecutor(), Executor)
    assert other["settings"]["executor"].startswith("ReversedPickling")


class Flaky(LocalExecutor):
    """Fails every PGD task on its first try, and the mlp's UAP task always."""

    def __init__(self) -> None:
        self.tries: dict[str, int] = {}

    def map(self, tasks: Iterable[CellTask]) -> Iterator[tuple[CellTask, CellResult | Exception]]:
        for task in tasks:
            self.tries[task.key] = self.tries.get(task.key, 0) + 1
            if (task.method.startswith("pgd") and self.tries[task.key] == 1) or (
                task.model == "mlp" and task.method.startswith("uap")
            ):
                yield task, RuntimeError(f"worker lost on {task.key}\nsecond line")
            else:
                yield task, task.run()


def test_a_failed_cell_is_retried_once_then_reported(tmp_path: Path) -> None:
    cfg = suite()
    cfg["defenses"] = [{"kind": "none"}]
    flaky = Flaky()
    res = run_suite(parse_config(cfg), out=tmp_path, progress=False, executor=flaky)
    assert len(res["cells"]) == 7 and [(f["model"], f["method"][:3]) for f in res["failed"]] == [("mlp", "uap")]
    assert max(flaky.tries.values()) == 2 and sum(flaky.tries.values()) == 8 + 3  # 2 PGD and 1 UAP retried
    report = (tmp_path / "report.md").read_text()
    assert "## Failed cells (each tried twice)" in report and "RuntimeError: worker lost on mlp" in report
    assert "second line" not in report
    # the failed cell is not written, so the next run computes only it
    again = run_suite(parse_config(cfg), out=tmp_path, progress=False)
    assert len(again["cells"]) == 8 and not again["failed"]


def test_executor_must_have_map(tmp_path: Path) -> None:
    from foolbench.errors import InvalidTypeError

    with pytest.raises(InvalidTypeError, match="executor must have a map"):
        run_suite(parse_config(suite()), out=tmp_path, progress=False, executor=object())  # type: ignore[arg-type]


def test_the_progress_bar_shows_the_running_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = {
        "data": {"dataset": "mnist", "train": 32, "test": 32},
        "models": [{"zoo": "lenet-mnist"}],
        "methods": [{"kind": "pgd", "eps": [0.1, 0.2], "n": 8, "steps": 2, "name": "p"}],
    }
    run_suite(parse_config(cfg), out=tmp_path / "a", progress=True)
    err = capsys.readouterr().err
    assert "lenet-mnist / none / p" in err and "50%" in err  # one of two budgets done, inside the cell
    run_suite(parse_config(cfg), out=tmp_path / "b", progress=False)
    assert capsys.readouterr().err == ""


class RemoteFailure(LocalExecutor):
    """Every UAP task fails as a Ray worker reports it: the error's first line, type name included."""

    def map(self, tasks: Iterable[CellTask]) -> Iterator[tuple[CellTask, CellResult | Exception]]:
        from foolbench.distributed._executor import CellFailed

        for task in tasks:
            yield task, (CellFailed("ValueError: run 2 diverged") if task.method.startswith("uap") else task.run())


def test_a_cell_failed_on_a_worker_is_reported_as_a_local_failure_is(tmp_path: Path) -> None:
    cfg = suite()
    cfg["defenses"] = [{"kind": "none"}]
    res = run_suite(parse_config(cfg), out=tmp_path, progress=False, executor=RemoteFailure())
    assert {f["error"] for f in res["failed"]} == {"ValueError: run 2 diverged"}  # not "CellFailed: ValueError: ..."
