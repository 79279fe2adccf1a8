"""Suites on Ray: same results as a local run, killed driver resumes, failed cells reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from foolbench.bench import parse_config, run_suite

ray = pytest.importorskip("ray")

from foolbench.distributed import RayExecutor


def suite(evaluations: int = 256) -> dict[str, Any]:
    return {
        "suite": {"seed": 3},
        "data": {"dataset": "mnist", "train": 120, "test": 60},
        "models": [{"zoo": "lenet-mnist"}],
        "defenses": [{"kind": "none"}, {"kind": "bit-depth", "bits": 2}],
        "methods": [
            {"kind": "random", "n": 16},
            {"kind": "map-elites", "max_evaluations": evaluations, "classes": [0, 1]},
            {"kind": "pgd", "eps": [0.3], "n": 16, "steps": 3},
        ],
    }


def values(res: dict[str, Any]) -> str:
    timeless = {"seconds", "wall_seconds"}
    cells = {c["key"]: {k: v for k, v in c.items() if k not in timeless} for c in res["cells"]}
    for c in cells.values():
        c["metrics"] = {k: v for k, v in c["metrics"].items() if k not in timeless}
    return json.dumps([cells, res["clean"], res["transfer"]], sort_keys=True)


DRIVER = """
import sys, foolbench as fb
from foolbench.bench import parse_config, run_suite
from foolbench.distributed import RayExecutor
cfg = parse_config({suite!r})
fb.distributed.connect("local", num_cpus=2)
run_suite(cfg, out=sys.argv[1], progress=False, executor=RayExecutor(threads=1))
"""


def test_killed_driver_resumes_without_rerunning_finished_cells(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(suite=suite(evaluations=20_000)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env, start_new_session=True)
    cells = out / "cells"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(cells.glob("*.json")) if cells.is_dir() else []) < 2:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in cells.glob("*.json")}
    assert len(finished) >= 2, "the driver was killed before any cell finished"
    res = subprocess.run(
        [sys.executable, str(script), str(out)], check=False, env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-2000:]
    for name, mtime in finished.items():
        assert (cells / name).stat().st_mtime_ns == mtime  # finished cells were not recomputed
    results = json.loads((out / "results.json").read_text())
    assert len(results["cells"]) == 6 and not results["failed"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    import foolbench as fb

    fb.distributed.connect("local", num_cpus=2)
    yield ray
    ray.shutdown()


def test_ray_suite_equals_local_suite(cluster: Any, tmp_path: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray cells run one thread each: the local reference the same way
    try:
        local = run_suite(parse_config(suite()), out=tmp_path / "local", progress=False)
    finally:
        torch.set_num_threads(threads)
    remote = run_suite(parse_config(suite()), out=tmp_path / "ray", progress=False, executor=RayExecutor(threads=1))
    assert not remote["failed"] and len(remote["cells"]) == 6
    assert values(local) == values(remote)
    assert remote["settings"]["executor"].startswith("RayExecutor")


def test_resources_the_cluster_lacks(cluster: Any) -> None:
    from foolbench.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="the cluster has"):
        RayExecutor(num_gpus=1)
    with pytest.raises(InvalidArgumentError, match="num_cpus"):
        RayExecutor(num_cpus=-1)


def test_retraining_round_searches_fan_out_with_the_same_results(cluster: Any) -> None:
    import torch

    import foolbench as fb
    from foolbench.distributed import RayMap

    x, y = fb.data.mnist_digits("train", limit=200)
    xt, yt = fb.data.mnist_digits("test", limit=100)

    def make(executor: Any) -> fb.defenses.FoolingClassRetraining:
        return fb.defenses.FoolingClassRetraining(
            fb.models.lenet_mnist(), fb.models.LeNet, x, y, xt, yt, rounds=1, searches_per_round=2,
            max_evaluations=256, epochs=1, seed=0, executor=executor,
        )  # fmt: skip

    local = make(None).run(progress=False)
    remote = make(RayMap(threads=1)).run(progress=False)
    strip = [{k: v for k, v in r.items() if "seconds" not in k} for r in local.rows]
    assert strip == [{k: v for k, v in r.items() if "seconds" not in k} for r in remote.rows]
    assert isinstance(RayMap(threads=1), fb.search.MapExecutor) and torch.get_num_threads() >= 1


def test_ray_map_cancels_its_tasks_on_ctrl_c(cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """RayMap.map cancelled its tasks only on an Exception: Ctrl-C while it waited left them running on the
    cluster, holding its CPUs."""
    import time

    from foolbench.distributed import RayMap

    executor = RayMap(threads=1)
    submitted: list[Any] = []
    cancelled: list[Any] = []
    get = ray.get

    def interrupted(refs: list[Any], *args: Any, **kwargs: Any) -> Any:
        submitted.extend(refs)
        raise KeyboardInterrupt

    def spy(ref: Any, **kwargs: Any) -> None:  # records only: killing workers mid-suite is Ray's part, not ours
        cancelled.append(ref)

    monkeypatch.setattr(ray, "get", interrupted)
    monkeypatch.setattr(ray, "cancel", spy)
    with pytest.raises(KeyboardInterrupt):
        executor.map(time.sleep, [0.2, 0.2])
    monkeypatch.undo()
    assert len(submitted) == 2 and cancelled == submitted  # each task sent is cancelled
    get(submitted)  # (they end by themselves)


def test_failed_runs_and_cells_name_the_exception_and_its_first_line(cluster: Any) -> None:
    """WorkerError and CellFailed kept the last line of Ray's text: a multi-line error lost its type and
    its first line."""
    from foolbench.distributed import RayMap, WorkerError
    from foolbench.distributed._executor import CellFailed

    def fails(x: int) -> int:
        raise ValueError(f"run {x} diverged\nat step 7")

    with pytest.raises(WorkerError, match=r"a run failed on a Ray worker: ValueError: run 1 diverged$"):
        RayMap(threads=1).map(fails, [1])
    executor = RayExecutor(threads=1)
    failed = executor._result(executor._remote.remote(fails, 2, 1))
    assert isinstance(failed, CellFailed) and str(failed) == "ValueError: run 2 diverged"


def test_cell_device_must_match_the_gpus_ray_assigns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Ray-run cell computes on the suite's device whatever Ray assigned it: --device cuda with --ray-gpus 0
    put every concurrent cell on cuda:0, and --ray-gpus 1 without --device cuda reserved a GPU nobody used."""
    import torch

    import foolbench.distributed
    from foolbench.cli import main

    def joined(**kwargs: Any) -> None:
        raise AssertionError("refused before joining a cluster")

    monkeypatch.setattr(foolbench.distributed, "RayExecutor", joined)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # --device cuda parses on this CPU machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    out = str(tmp_path / "o")
    assert main(["bench", "--suite", "quick", "--ray", "--device", "cuda", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--device 'cuda' needs a GPU per Ray task (--ray-gpus > 0)" in err
    assert main(["bench", "--suite", "quick", "--ray", "--ray-gpus", "1", "--out", out]) == 2
    assert "--ray-gpus=1 reserves a GPU for each Ray task, but the cells compute on --device 'cpu'" in (
        capsys.readouterr().err
    )


def test_ray_executor_refuses_cells_on_a_device_without_its_gpus(cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from foolbench.bench import CellTask
    from foolbench.errors import InvalidArgumentError

    def task(device: str | None) -> CellTask:
        return CellTask(config=None, model="m", defense="none", method="pgd", key="k", seed=1, digest="d",
                        out="o", device=device)  # fmt: skip

    with pytest.raises(InvalidArgumentError, match=r"device 'cuda' needs a GPU per Ray task \(num_gpus > 0\)"):
        next(iter(RayExecutor(num_gpus=0).map([task("cuda")])))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 1.0})  # this one has none
    with pytest.raises(InvalidArgumentError, match=r"num_gpus=0.5 reserves a GPU .* device 'cpu'"):
        next(iter(RayExecutor(num_gpus=0.5).map([task(None)])))
