"""Small model factories for suites: ``factory = "foolbench.bench.factories:mlp"`` in a TOML file.

A factory takes the number of classes and returns a fresh ``nn.Module``; a suite
wraps it (input shape, mean/std from the TOML) and trains it when ``train_epochs`` is set.
Your own factories follow the same signature.
"""

from __future__ import annotations

from torch import nn

__all__ = ["mlp", "small_cnn"]


def mlp(num_classes: int = 10) -> nn.Module:
    """A 784-128-K perceptron for 28 x 28 grayscale inputs.

    Examples:
        >>> import torch
        >>> mlp(10)(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, num_classes))


def small_cnn(num_classes: int = 10) -> nn.Module:
    """A two-layer strided CNN for 28 x 28 grayscale inputs.

    Examples:
        >>> import torch
        >>> small_cnn(10)(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 6 * 6, num_classes),
    )
