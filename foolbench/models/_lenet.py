"""LeNet for MNIST, and the reproducible recipe that trained the shipped weights."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from foolbench import _checks

__all__ = ["LeNet", "train_classifier"]


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


def _shift(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Random integer translations of up to ``max_shift`` pixels (zero fill), one per image."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)
    bi = torch.arange(b, device=x.device)[:, None, None]
    return pad[bi, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def train_classifier(
    module: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    max_shift: int = 2,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
) -> nn.Module:
    """Train ``module`` with Adam on (images, labels); small, explicit and seeded.

    Used for the shipped LeNet and by the tests to build independent MNIST models.
    The module's ``training`` flag is restored afterwards.

    Args:
        module: the network to train in place.
        images: (N, C, H, W) raw training images in [0, 1].
        labels: (N,) class indices.
        epochs: passes over the data.
        batch_size: mini-batch size.
        lr: Adam learning rate (cosine-decayed to zero).
        weight_decay: Adam weight decay.
        max_shift: random translation augmentation in pixels (0 turns it off).
        preprocess: applied to each batch before the module (e.g. normalisation).
        seed: seeds shuffling, augmentation and nothing else; initialise the
            module's weights yourself before calling.

    Returns:
        The trained module.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        >>> x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
        >>> train_classifier(net, x, y, epochs=1, batch_size=16) is net
        True
    """
    _checks.positive_int("epochs", epochs)
    _checks.positive_int("batch_size", batch_size)
    x = _checks.images("images", images)
    y = _checks.labels("labels", labels, batch=x.shape[0], num_classes=1 << 30)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-x.shape[0] // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    was_training = module.training
    module.train()
    try:
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=gen)
            for idx in torch.split(order, batch_size):
                xb = _shift(x[idx], gen, max_shift)
                if preprocess is not None:
                    xb = preprocess(xb)
                loss = F.cross_entropy(module(xb), y[idx].to(xb.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    finally:
        module.train(was_training)
    return module
