"""Shared fixtures: real MNIST digits and small models trained on them."""

from __future__ import annotations

import pytest
import torch

import foolbench as fb

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def lenet() -> fb.models.TorchClassifier:
    return fb.models.lenet_mnist()


@pytest.fixture(scope="session")
def digits_test() -> tuple[torch.Tensor, torch.Tensor]:
    return fb.models.mnist_digits("test")


@pytest.fixture(scope="session")
def digits_train() -> tuple[torch.Tensor, torch.Tensor]:
    return fb.models.mnist_digits("train")


def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def _small_cnn() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 6 * 6, 10),
    )


@pytest.fixture(scope="session")
def mlp_mnist(digits_train: tuple[torch.Tensor, torch.Tensor]) -> fb.models.TorchClassifier:
    """An MLP trained in the fixture on real digits (differently built from LeNet)."""
    torch.manual_seed(1)
    net = _mlp()
    x, y = digits_train
    fb.models.train_classifier(net, x, y, epochs=3, batch_size=128, lr=3e-3, max_shift=0, seed=1)
    return fb.models.TorchClassifier(net.eval(), input_shape=(1, 28, 28), num_classes=10)


@pytest.fixture(scope="session")
def cnn_mnist(digits_train: tuple[torch.Tensor, torch.Tensor]) -> fb.models.TorchClassifier:
    """A small strided CNN trained in the fixture on real digits, with mean/std inside the adapter."""
    torch.manual_seed(2)
    net = _small_cnn()
    x, y = digits_train

    class Norm(torch.nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return (t - 0.5) / 0.5

    fb.models.train_classifier(net, x, y, epochs=8, batch_size=128, lr=3e-3, max_shift=0, preprocess=Norm(), seed=2)
    return fb.models.TorchClassifier(net.eval(), input_shape=(1, 28, 28), num_classes=10, mean=0.5, std=0.5)
