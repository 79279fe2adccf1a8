"""Real photos with their ImageNet labels, offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from foolbench import _checks
from foolbench.errors import MissingDependencyError

__all__ = ["imagenet_photos"]

# skimage.data photos and the ImageNet class EfficientNet-Lite0 gives each.
_PHOTOS = {"chelsea": 285, "coffee": 967, "motorcycle_left": 665}


def imagenet_photos(size: int = 224, *, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Three real photos from ``scikit-image`` with their ImageNet labels, offline.

    The cat ``chelsea`` (285, Egyptian cat), ``coffee`` (967, espresso) and
    ``motorcycle_left`` (665, moped), centre-cropped to a square and resized to
    ``size`` x ``size``. Needs the ``imagenet`` extra (``scikit-image``).

    Args:
        size: side of the square images (at least 8).
        device: where to put the tensors (default CPU).

    Returns:
        ``(images, labels)``: float32 RGB images in [0, 1] and int64 ImageNet labels.

    Shape:
        - images: (3, 3, size, size)
        - labels: (3,)

    Raises:
        InvalidArgumentError: ``size`` < 8, or a ``device`` this machine lacks.
        InvalidTypeError: ``size`` is not an int or ``device`` not a device name.
        MissingDependencyError: scikit-image is not installed.

    Examples:
        >>> import foolbench as fb
        >>> x, y = fb.data.imagenet_photos(64)
        >>> x.shape, y.tolist()
        (torch.Size([3, 3, 64, 64]), [285, 967, 665])
    """
    _checks.positive_int("size", size, minimum=8)
    dev = _checks.torch_device("device", device)
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
    return x.to(dev), torch.tensor(list(_PHOTOS.values()), device=dev)
