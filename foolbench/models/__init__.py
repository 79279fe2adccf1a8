"""Classifier adapters and the model zoo.

Any ``torch.nn.Module`` becomes a :class:`Classifier` through
:class:`TorchClassifier`; :func:`lenet_mnist` and :func:`efficientnet_lite0`
are real pretrained models that work offline.
"""

from __future__ import annotations

from foolbench.data import imagenet_photos, mnist_digits, train_classifier
from foolbench.models._classifier import BaseClassifier, Bounds, Classifier, TorchClassifier, check_classifier
from foolbench.models._lenet import LeNet
from foolbench.models._zoo import (
    MNIST_MEAN,
    MNIST_STD,
    ModelInfo,
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
    "LeNet",
    "ModelInfo",
    "TorchClassifier",
    "check_classifier",
    "efficientnet_lite0",
    "imagenet_class_names",
    "imagenet_photos",
    "lenet_mnist",
    "load_model",
    "load_state_dict",
    "mnist_digits",
    "train_classifier",
    "zoo",
]
