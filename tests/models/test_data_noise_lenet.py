"""Uniform noise on the shipped LeNet, and the separate noise-trained LeNet (issue 16 item 4)."""

from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench.errors import InvalidArgumentError, InvalidTypeError
from foolbench.models._lenet import lenet_mnist_noise_trained


def _noise_top(clf: fb.models.TorchClassifier) -> tuple[torch.Tensor, torch.Tensor]:
    noise = torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    top = clf.probs(noise).max(1)
    return top.values, top.indices


def test_shipped_lenet_calls_uniform_noise_an_eight(lenet: fb.models.TorchClassifier) -> None:
    """The finding behind the claims table: noise is far brighter than any digit, and 8 takes it."""
    conf, cls = _noise_top(lenet)
    assert float(conf.median()) > 0.95
    assert torch.bincount(cls, minlength=10).argmax().item() == 8
    assert (cls == 8).float().mean().item() > 0.9
    # at MNIST's own brightness (mean pixel 0.125 vs 0.5) the same noise is not confident
    dim = torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.25
    assert float(lenet.probs(dim).max(1).values.median()) < 0.5


def test_noise_trained_lenet_keeps_accuracy_and_doubts_noise(
    digits_test: tuple[torch.Tensor, torch.Tensor],
) -> None:
    clf = lenet_mnist_noise_trained()
    x, y = digits_test
    assert (clf.predict(x) == y).float().mean().item() >= 0.98
    conf, cls = _noise_top(clf)
    assert float(conf.median()) < 0.2
    assert torch.bincount(cls, minlength=10).max().item() < 500  # no single class takes the noise
    # noise it was not trained on: Gaussian, clipped
    gauss = (0.5 + 0.5 * torch.randn(1000, 1, 28, 28, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert float(clf.probs(gauss).max(1).values.median()) < 0.5


def test_noise_share_zero_is_the_old_training_and_noise_changes_it() -> None:
    x, y = fb.data.mnist_digits("train", limit=64)

    def train(**kw: float) -> torch.Tensor:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        fb.data.train_classifier(net, x, y, epochs=2, batch_size=16, seed=0, **kw)
        return net[1].weight.detach().clone()

    plain = train()
    assert torch.equal(plain, train(noise_share=0.0))
    assert not torch.equal(plain, train(noise_share=0.5))
    assert torch.equal(train(noise_share=0.5), train(noise_share=0.5))


def test_noise_arguments_are_checked() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    x, y = fb.data.mnist_digits("train", limit=8)
    with pytest.raises(InvalidArgumentError, match="noise_share must be a finite number in"):
        fb.data.train_classifier(net, x, y, noise_share=-0.1)
    with pytest.raises(InvalidTypeError, match="noise_weight must be a real number"):
        fb.data.train_classifier(net, x, y, noise_weight="high")  # type: ignore[arg-type]
