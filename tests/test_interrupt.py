"""SIGKILL a command-line search and a bench suite mid-run, resume them, and compare with uninterrupted runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")

SUITE = """
[suite]
name = "killed"
seed = 1

[data]
dataset = "mnist"
train = 300
test = 200

[[models]]
zoo = "lenet-mnist"

[[defenses]]
kind = "none"

[[defenses]]
kind = "median"

[[methods]]
kind = "map-elites"
max_evaluations = 2000

[[methods]]
kind = "pgd"
eps = [0.3]
n = 64
steps = 10

"""


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "foolbench.cli", *args]


def kill_when(cmd: list[str], ready: Any, timeout: float = 120.0) -> bool:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` holds; False if it finished first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            if ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.02)
        raise AssertionError("the command never reached the point to interrupt")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_killed_search_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    args = ["evolve", "--generations", "150", "--target-confidence", "1.0", "--seed", "3", "--no-progress"]
    args += ["--checkpoint-every", "3"]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    assert kill_when(cli(*args, "--out", str(killed)), lambda: (killed / "checkpoint.pt").is_file())
    assert not (killed / "summary.json").exists()  # it really died mid-run
    subprocess.run(cli(*args, "--out", str(killed)), check=True, capture_output=True)
    subprocess.run(cli(*args, "--out", str(whole)), check=True, capture_output=True)
    a = json.loads((killed / "summary.json").read_text())
    b = json.loads((whole / "summary.json").read_text())
    a["results"].pop("seconds")
    b["results"].pop("seconds")
    assert a == b
    ta = torch.load(killed / "images.pt", weights_only=True)
    tb = torch.load(whole / "images.pt", weights_only=True)
    assert torch.equal(ta["images"], tb["images"]) and torch.equal(ta["confidence"], tb["confidence"])


def test_killed_suite_keeps_finished_cells_and_resumes(tmp_path: Path) -> None:
    config = tmp_path / "suite.toml"
    config.write_text(SUITE)
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    args = ["bench", "--config", str(config), "--no-progress"]
    cells = killed / "cells"
    assert kill_when(cli(*args, "--out", str(killed)), lambda: len(list(cells.glob("*.json"))) >= 2)
    assert not (killed / "results.json").exists()
    finished = {p.name: p.stat().st_mtime_ns for p in cells.glob("*.json")}
    subprocess.run(cli(*args, "--out", str(killed)), check=True, capture_output=True)
    for name, mtime in finished.items():  # nothing finished was recomputed
        assert (cells / name).stat().st_mtime_ns == mtime, name
    subprocess.run(cli(*args, "--out", str(whole)), check=True, capture_output=True)

    def metrics(out: Path) -> dict[str, Any]:
        res = json.loads((out / "results.json").read_text())
        return {c["key"]: {k: v for k, v in c["metrics"].items() if k != "seconds"} for c in res["cells"]}

    assert metrics(killed) == metrics(whole)
    assert len(metrics(whole)) == 4
