"""Data that ships with foolbench, and the small training loop used on it.

The lowest layer: it imports nothing else of foolbench but the argument checks,
so models, defenses and bench can all build on it.

- :func:`mnist_digits`: 5,000 real MNIST digits, shipped in the package
  (CC BY-SA 3.0, no extra needed), with a fixed train/test split.
- :func:`imagenet_photos`: three real photos with ImageNet labels (``imagenet`` extra).
- :func:`train_classifier`: seeded Adam training of any module on (images, labels),
  bit-identical whatever torch's thread count.

``foolbench.models.mnist_digits``, ``imagenet_photos`` and ``train_classifier`` are
the same functions under their 0.1.0 names.
"""

from __future__ import annotations

from foolbench.data._mnist import mnist_digits
from foolbench.data._photos import imagenet_photos
from foolbench.data._train import train_classifier

__all__ = ["imagenet_photos", "mnist_digits", "train_classifier"]
