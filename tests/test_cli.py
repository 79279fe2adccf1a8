from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import torch

import foolbench as fb
from foolbench import _checks, _io
from foolbench.cli import DEFAULT_THREADS, build_parser, main
from foolbench.errors import InvalidArgumentError, InvalidTypeError


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert fb.__version__ in capsys.readouterr().out


def test_models_lists_zoo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "lenet-mnist" in out and "efficientnet-lite0" in out


def test_every_flag_has_help_and_every_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings} has no help"
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert f"(default: {DEFAULT_THREADS})" in text, name
    with pytest.raises(SystemExit):
        main(["evolve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"genomes per generation (default: {fb.search.MNIST_RECIPE.batch_size})" in text
    assert f"(default: {fb.search.MNIST_RECIPE.mutation_rate})" in text
    assert main([]) == 0
    assert "--threads N, default 1" in " ".join(capsys.readouterr().out.split())


def test_threads_sets_torch_intra_op_threads_for_the_run(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    argv = ["ascend", "--classes", "1", "--steps", "1"]
    cases = [(["--threads", "2"], 2), (["--threads", "0"], before), ([], DEFAULT_THREADS)]
    for i, (flag, during) in enumerate(cases):
        out = tmp_path / str(i)
        assert main([*argv, *flag, "--out", str(out)]) == 0
        assert json.loads((out / "summary.json").read_text())["versions"]["torch_threads"] == during
        assert torch.get_num_threads() == before  # given back after the run


def test_nonnegative_int_and_positive_int() -> None:
    assert _checks.nonnegative_int("jitter", 0) == 0
    with pytest.raises(InvalidArgumentError, match=r"jitter must be an int >= 0, got -1"):
        _checks.nonnegative_int("jitter", -1)
    with pytest.raises(InvalidArgumentError, match=r"steps must be an int >= 1, got 0"):
        _checks.positive_int("steps", 0)
    with pytest.raises(InvalidTypeError, match=r"jitter must be an int >= 0, got bool True"):
        _checks.nonnegative_int("jitter", True)


def test_seed_and_device_checks() -> None:
    assert _checks.seed_int("seed", 2**64 - 1) == 2**64 - 1
    with pytest.raises(
        InvalidArgumentError, match=r"seed must be an int in \[0, 2\*\*64 - 1\], got 18446744073709551616"
    ):
        _checks.seed_int("seed", 2**64)
    with pytest.raises(InvalidArgumentError, match=r"seed must be an int in \[0, 2\*\*64 - 1\]"):
        _checks.generator("seed", 2**64)
    assert _checks.torch_device("device", None) == torch.device("cpu")
    with pytest.raises(InvalidArgumentError, match=r"device must be a torch device such as 'cpu'.*got 'tpu9'"):
        _checks.torch_device("device", "tpu9")
    with pytest.raises(InvalidArgumentError, match=r"device must be 'cpu', 'cuda' or 'mps'.*got 'meta'"):
        _checks.torch_device("device", "meta")


def test_class_indices_by_name_or_index() -> None:
    names = ["tench", "goldfish", "great white shark"]
    assert _checks.class_indices("classes", ["Goldfish", "0", 2], class_names=names) == [1, 0, 2]
    assert _checks.class_indices("classes", [" great white shark "], class_names=names) == [2]
    with pytest.raises(InvalidArgumentError, match=r"classes must hold class indices or class names .*'shark'"):
        _checks.class_indices("classes", ["shark"], class_names=names)
    with pytest.raises(InvalidArgumentError, match=r"classes must not repeat a class"):
        _checks.class_indices("classes", ["tench", "0"], class_names=names)
    with pytest.raises(
        InvalidArgumentError, match=r"classes names 'crane', which classes \[1, 3\] share; give the index"
    ):
        _checks.class_indices("classes", ["crane"], class_names=["bird", "crane", "ship", "Crane"])
    assert _checks.class_indices("classes", ["3", "bird"], class_names=["bird", "crane", "ship", "Crane"]) == [3, 0]


def test_atomic_write_fsyncs_the_file_and_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kinds: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        kinds.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr("foolbench._io.os.fsync", spy)
    _io.write_json(tmp_path / "a" / "summary.json", {"x": 1})
    assert kinds == ["file", "folder"]
    assert json.loads((tmp_path / "a" / "summary.json").read_text()) == {"x": 1}


def test_python_dash_m_foolbench_is_the_command() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "foolbench", "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == f"foolbench {fb.__version__}", done


TINY_SUITE = (
    '[data]\ndataset = "mnist"\ntrain = 64\ntest = 64\n\n[[models]]\nzoo = "lenet-mnist"\n\n'
    '[[methods]]\nkind = "random"\nn = 8\n'
)


def test_bench_ray_runs_the_cells_with_threads_and_records_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bench --ray` built its RayExecutor without --threads (cells ran with --ray-cpus threads), while
    results.json and report.md gave the driver's thread count as the cells'."""
    import foolbench.distributed
    from foolbench.bench import LocalExecutor

    made: list[dict[str, Any]] = []

    class Ray(LocalExecutor):  # runs the cells here; keeps what the command asked Ray for
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)
            self.threads = kwargs.get("threads") or max(1, int(kwargs["num_cpus"]))  # as RayExecutor does

    monkeypatch.setattr(foolbench.distributed, "RayExecutor", Ray)
    config = tmp_path / "suite.toml"
    config.write_text(TINY_SUITE)
    cpus = torch.get_num_threads() + 3  # not the driver's count
    for i, (threads, cells) in enumerate([("3", 3), ("0", cpus)]):  # --threads 0: Ray's default, --ray-cpus
        out = tmp_path / str(i)
        argv = ["bench", "--config", str(config), "--ray", "--ray-cpus", str(cpus), "--threads", threads]
        assert main([*argv, "--out", str(out), "--no-progress"]) == 0
        assert made[-1]["threads"] == (int(threads) or None) and made[-1]["num_cpus"] == cpus
        settings = json.loads((out / "results.json").read_text())["settings"]
        assert settings["torch_threads"] == cells, settings
        assert settings["driver_torch_threads"] == (int(threads) or torch.get_num_threads())
        assert f", {cells} torch thread(s)," in (out / "report.md").read_text()
    monkeypatch.undo()

    class Cluster:  # connect()'s Ray, without a cluster
        def cluster_resources(self) -> dict[str, float]:
            return {"CPU": 8.0}

        def remote(self, **resources: Any) -> Any:
            return lambda fn: fn

    monkeypatch.setattr(foolbench.distributed._executor, "connect", lambda address: Cluster())
    assert repr(foolbench.distributed.RayExecutor(num_cpus=2, threads=3)).endswith("num_gpus=0, threads=3)")
