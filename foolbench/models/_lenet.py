"""LeNet for MNIST (the shipped weights are trained by ``tools/train_lenet_mnist.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LeNet"]


class LeNet(nn.Module):
    """LeNet-5 style CNN for 1x28x28 inputs (two conv + max-pool blocks, three linear layers).

    Inputs are MNIST-normalised images (mean 0.1307, std 0.3081); the
    :func:`foolbench.models.lenet_mnist` adapter applies that normalisation.

    Shape:
        - input: (B, 1, 28, 28)
        - output: (B, 10) logits

    Examples:
        >>> import torch
        >>> LeNet(11)(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 11])
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        out: torch.Tensor = self.fc2(x)
        return out
