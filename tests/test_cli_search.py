from __future__ import annotations

import json
from pathlib import Path

import pytest

from foolbench.cli import main


def test_demo_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--classes", "8,2", "--no-progress"]) == 0
    assert "2/2 classes at >= 99.99%" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema"] == "foolbench.summary/1" and summary["command"] == "demo"
    assert summary["results"]["fooled_at_0.9999"] == 2 and summary["settings"]["classes"] == ["8", "2"]
    assert (out / "images.png").is_file() and (out / "report.md").is_file()


def test_evolve_resumes_from_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "evo"
    args = ["evolve", "--out", str(out), "--no-progress", "--seed", "1"]
    assert main([*args, "--generations", "3"]) == 0
    assert main([*args, "--generations", "6"]) == 0
    assert json.loads((out / "summary.json").read_text())["results"]["evaluations"] == 6 * 64


def test_evolve_cppn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cppn"
    args = ["evolve", "--encoding", "cppn", "--classes", "1,5", "--out", str(out), "--no-progress"]
    assert main([*args, "--max-evaluations", "10000"]) == 0
    assert "2/2 classes at >= 99.99%" in capsys.readouterr().out
    assert "cppn encoding" in (out / "report.md").read_text()
    # a direct-encoding run refuses the CPPN checkpoint instead of overwriting it
    assert main(["evolve", "--classes", "1,5", "--out", str(out), "--no-progress", "--generations", "1"]) == 2
    assert "checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["evolve", "--encoding", "cppn", "--max-nodes", "3"], "--max-nodes must be at least 6"),
        (["evolve", "--encoding", "pixels"], "invalid choice"),
        (["evolve", "--model", "resnet"], "--model must be one of"),
        (["evolve", "--classes", "3,x"], "--classes must hold class indices or class names"),
        (["evolve", "--classes", "11"], "--classes must hold class indices in [0, 9], got 11"),
        (["evolve", "--max-evaluations", "0"], "--max-evaluations must be an int >= 1"),
        (["evolve", "--target-confidence", "2"], "--target-confidence"),
    ],
)
def test_bad_arguments_one_line(
    argv: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and err.count("\n") == 1


def test_ascend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "asc"
    assert main(["ascend", "--classes", "3,4", "--steps", "300", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())["results"]
    assert summary["fooled_at_0.9999"] == 2 and summary["method"] == "gradient_ascent"


def test_uap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "uap"
    assert main(["uap", "--fit", "100", "--held-out", "200", "--max-passes", "3", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())["results"]
    assert 0.0 <= summary["held_out_fooling_rate"] <= 1.0 and summary["held_out_images"] == 200
    assert (out / "images.png").is_file() and (out / "perturbation.pt").is_file()
    assert main(["uap", "--eps", "-1", "--out", str(out)]) == 2
