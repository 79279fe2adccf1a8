from __future__ import annotations

import pytest

import foolbench as fb
from foolbench.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert fb.__version__ in capsys.readouterr().out


def test_models_lists_zoo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "lenet-mnist" in out and "efficientnet-lite0" in out
