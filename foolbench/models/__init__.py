"""Classifier adapters and the model zoo.

Any ``torch.nn.Module`` becomes a :class:`Classifier` through
:class:`TorchClassifier` (with ``precision``, ``channels_last`` and ``compile``
options); :func:`check_classifier` turns any object with ``input_shape``,
``num_classes``, ``bounds`` and ``__call__`` into a :class:`BaseClassifier`;
:class:`CountingClassifier` counts evaluations; :func:`weights_digest` keys caches; :func:`lenet_mnist`, :func:`lenet_mnist_noise_trained` and
:func:`efficientnet_lite0` are real pretrained models that work offline; :func:`native_bf16` tells
whether ``precision="bf16"`` can pay off on a device (:func:`auto_precision` picks).
"""

from __future__ import annotations

from foolbench.data import imagenet_photos, mnist_digits, train_classifier
from foolbench.models._classifier import (
    BaseClassifier,
    Bounds,
    Classifier,
    CountingClassifier,
    TorchClassifier,
    check_classifier,
    check_device,
    weights_digest,
)
from foolbench.models._hardware import auto_precision, native_bf16
from foolbench.models._lenet import LeNet, lenet_mnist_noise_trained
from foolbench.models._zoo import (
    MNIST_MEAN,
    MNIST_STD,
    ModelInfo,
    default_chunk,
    efficientnet_lite0,
    imagenet_class_names,
    lenet_mnist,
    load_model,
    load_state_dict,
    zoo,
)

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "BaseClassifier",
    "Bounds",
    "Classifier",
    "CountingClassifier",
    "LeNet",
    "ModelInfo",
    "TorchClassifier",
    "auto_precision",
    "check_classifier",
    "check_device",
    "default_chunk",
    "efficientnet_lite0",
    "imagenet_class_names",
    "imagenet_photos",
    "lenet_mnist",
    "lenet_mnist_noise_trained",
    "load_model",
    "load_state_dict",
    "mnist_digits",
    "native_bf16",
    "train_classifier",
    "weights_digest",
    "zoo",
]
