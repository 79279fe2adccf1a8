"""LeNet for MNIST, and the noise-trained LeNet (weights trained by ``tools/train_lenet_mnist.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foolbench.models._classifier import TorchClassifier

__all__ = ["LeNet", "lenet_mnist_noise_trained"]


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


def lenet_mnist_noise_trained(*, device: torch.device | str | None = None, batch_size: int = 1024) -> TorchClassifier:
    """A LeNet trained to give uniform noise low confidence (outlier exposure); not the shipped ``lenet_mnist``.

    Same architecture, data, seed and recipe as :func:`foolbench.models.lenet_mnist`
    (``tools/train_lenet_mnist.py``, 15 epochs, Adam, +-2 pixel shifts, 4,000
    ``"train"`` digits), plus ``noise_share=0.25`` in
    :func:`foolbench.data.train_classifier`: each batch gets a quarter extra
    uniform-noise images at random contrast, trained towards the uniform
    distribution over the 10 digits (Hendrycks et al., ICLR 2019). It was
    trained for exactly this purpose, so its low confidence on uniform noise is
    by construction, not a finding about CNNs.

    Measured (this 2-core CPU, seed-0 noise): held-out accuracy 98.6% (1,000
    ``"test"`` digits, the same as ``lenet_mnist``); 1,000 U(0, 1) noise images
    get a median top confidence of 11.0% (``lenet_mnist``: 99.75%, all of them
    called an 8).

    Args:
        device: where to compute (default CPU).
        batch_size: chunk size of :meth:`~foolbench.models.TorchClassifier.probs`.

    Returns:
        A :class:`~foolbench.models.TorchClassifier` with input shape (1, 28, 28) and 10 classes.

    Examples:
        >>> import torch
        >>> clf = lenet_mnist_noise_trained()
        >>> noise = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        >>> bool(clf.probs(noise).max(1).values.median() < 0.5)
        True
    """
    # _zoo imports LeNet from this module, so its loader is imported here, at call time
    from foolbench.models._zoo import shipped_lenet

    return shipped_lenet("lenet_mnist_noise_trained.pt", device=device, batch_size=batch_size)
