"""Own models and own data from the user's folder; a suite file is code and its failures are one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from foolbench.bench import load_config, run_suite
from foolbench.cli import main
from foolbench.errors import ConfigError

MODELS = """
import sys
import torch

def digits8(num_classes):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, num_classes))

def leave(num_classes):
    sys.exit(num_classes)

def interrupt(num_classes):
    raise KeyboardInterrupt
"""

DATA = """
import torch

def blobs():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(240) % 4
    x = (torch.rand(240, 1, 8, 8, generator=g) * 0.3 + (y.view(-1, 1, 1, 1) / 4.0)).clamp(0, 1)
    return x[:200], y[:200], x[200:], y[200:]
"""


def suite(model: str, data: str, extra: str = "") -> str:
    return f"""
[suite]
name = "own"
seed = 1

[data]
dataset = "{data}"

[[models]]
name = "mine"
factory = "{model}"
input_shape = [1, 8, 8]
num_classes = 4
train_epochs = 30
{extra}

[[methods]]
kind = "random"
n = 8

[[methods]]
kind = "pgd"
eps = [0.05, 0.3]
n = 16
steps = 3

[[methods]]
kind = "uap"
fit = 20
held_out = 20
max_passes = 1
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's project folder with a models module, a data module and a suite, run from elsewhere."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "own_models_a.py").write_text(MODELS)
    (folder / "own_data_a.py").write_text(DATA)
    (folder / "suite.toml").write_text(suite("own_models_a:digits8", "own_data_a:blobs"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for name in ("own_models_a", "own_data_a"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return folder


def test_cli_runs_own_model_and_own_data_from_the_suite_folder(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    reseeded: list[int] = []  # seeding the factory's model must leave the GPU generators alone
    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeded.append)
    out = project.parent / "out"
    assert main(["bench", "--config", str(project / "suite.toml"), "--out", str(out), "--no-progress"]) == 0
    import json

    res = json.loads((out / "results.json").read_text())
    assert not res["failed"] and len(res["cells"]) == 3
    assert res["clean"][0]["clean_accuracy"] > 0.5  # four blobs, learned: far above chance (0.25)
    assert {c["method_kind"] for c in res["cells"]} == {"random", "pgd", "uap"}
    assert sys.path.count(str(project)) == 0  # the search path is restored
    assert reseeded == []


def test_npz_data_beside_the_suite_and_a_module_in_the_current_directory(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.path.insert(0, str(project))
    try:
        import own_data_a  # type: ignore[import-not-found]

        arrays = [a.numpy() for a in own_data_a.blobs()]
    finally:
        sys.path.remove(str(project))
    np.savez(project / "blobs.npz", x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "own_models_b.py").write_text(MODELS)
    monkeypatch.chdir(cwd)
    monkeypatch.delitem(sys.modules, "own_models_b", raising=False)
    (project / "npz.toml").write_text(suite("own_models_b:digits8", "blobs.npz"))
    res = run_suite(project / "npz.toml", out=tmp_path / "out", progress=False)
    assert not res["failed"] and res["clean"][0]["clean_accuracy"] > 0.5


@pytest.mark.parametrize(
    ("model", "data", "extra", "match"),
    [
        ("nowhere:f", "own_data_a:blobs", "", r"cannot import factory 'nowhere:f' \(looked in .*project, .*elsewhere"),
        ("own_models_a:leave", "own_data_a:blobs", "", r"factory 'own_models_a:leave' failed: SystemExit: 4"),
        (
            "own_models_a:digits8",
            "own_data_a:nothing",
            "",
            r"data\.dataset: cannot import factory 'own_data_a:nothing'",
        ),
        ("own_models_a:digits8", "missing.npz", "", r"data\.dataset: no file 'missing\.npz' \(looked in .*project"),
        ("own_models_a:digits8", "own_data_a:blobs", "bounds = [0.0, 2.0]\nmean = 0.5", None),
    ],
)
def test_user_code_failures_are_one_clear_line(
    project: Path, model: str, data: str, extra: str, match: str | None
) -> None:
    path = project / "bad.toml"
    path.write_text(suite(model, data, extra))
    if match is None:
        assert run_suite(path, out=project / "ok", progress=False)["failed"] == []
        return
    with pytest.raises(ConfigError, match=match) as info:
        run_suite(path, out=project / "o", progress=False)
    assert "\n" not in str(info.value)


def test_keyboard_interrupt_from_a_factory_still_interrupts(project: Path) -> None:
    path = project / "int.toml"
    path.write_text(suite("own_models_a:interrupt", "own_data_a:blobs"))
    with pytest.raises(KeyboardInterrupt):
        run_suite(path, out=project / "o", progress=False)


def test_model_and_data_shapes_must_agree(project: Path) -> None:
    path = project / "zoo.toml"
    path.write_text(
        '[data]\ndataset = "own_data_a:blobs"\n[[models]]\nzoo = "lenet-mnist"\n[[methods]]\nkind = "random"\n'
    )
    with pytest.raises(ConfigError, match=r"model 'lenet-mnist' takes inputs of shape \(1, 28, 28\), but its data has"):
        run_suite(load_config(path), out=project / "o", progress=False)
    (project / "bad_data.py").write_text("def f():\n    return 1, 2\n")
    path.write_text('[data]\ndataset = "bad_data:f"\n[[models]]\nzoo = "lenet-mnist"\n[[methods]]\nkind = "random"\n')
    with pytest.raises(ConfigError, match=r"must return \(x_train, y_train, x_test, y_test\)"):
        run_suite(path, out=project / "o", progress=False)
    (project / "bad_labels.py").write_text(
        "import torch\n\ndef f():\n    x = torch.rand(6, 1, 28, 28)\n    return x, torch.full((6,), 12), x, torch.zeros(6)\n"
    )
    path.write_text('[data]\ndataset = "bad_labels:f"\n[[models]]\nzoo = "lenet-mnist"\n[[methods]]\nkind = "random"\n')
    with pytest.raises(ConfigError, match=r"'lenet-mnist' has 10 classes, but its data has labels in \[0, 12\]"):
        run_suite(path, out=project / "o", progress=False)


def test_a_factory_comes_from_its_own_folder_and_its_file_as_it_is_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # importlib returned the module of that name already loaded: a second suite's "mymods_c:f" ran the
    # first folder's function, and an edited file kept its old code in the process (its digest the new one's)
    import os

    from foolbench.bench._workspace import resolve

    monkeypatch.delitem(sys.modules, "mymods_c", raising=False)
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, value in ((a, "A"), (b, "B")):
        folder.mkdir()
        (folder / "mymods_c.py").write_text(f"def f():\n    return {value!r}\n")
    assert resolve("mymods_c:f", "x", str(a))() == "A"
    assert resolve("mymods_c:f", "x", str(b))() == "B"
    assert resolve("mymods_c:f", "x", str(a))() == "A"
    source = a / "mymods_c.py"
    source.write_text("def f():\n    return 'A, edited'\n")
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later time, whatever the clock's grain
    assert resolve("mymods_c:f", "x", str(a))() == "A, edited"
    assert resolve("mymods_c:f", "x", str(a)) is resolve("mymods_c:f", "x", str(a))  # unchanged: not reloaded
    monkeypatch.delitem(sys.modules, "mymods_c", raising=False)


def test_a_kept_workspace_is_built_anew_when_a_factory_file_changes(project: Path) -> None:
    # a Ray worker keeps its workspace between runs of a suite: keyed on the config alone, it went on with
    # the models an edited factory file had built before
    import os

    from foolbench.bench._executor import forget_workspaces, workspace

    cfg = load_config(project / "suite.toml")
    out = project.parent / "out"
    first = workspace(cfg, out, None)
    assert workspace(cfg, out, None) is first
    source = project / "own_models_a.py"
    source.write_text(source.read_text() + "\n# edited\n")
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert workspace(cfg, out, None) is not first
    forget_workspaces()
