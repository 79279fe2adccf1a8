from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench.data._train import torch_threads
from foolbench.errors import InvalidArgumentError


def _train_at(threads: int, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        net = fb.models.LeNet()
        fb.data.train_classifier(net, x, y, epochs=1, batch_size=64, seed=3)
        assert torch.get_num_threads() == threads  # the caller's setting is put back
    finally:
        torch.set_num_threads(before)
    return [p.detach().clone() for p in net.state_dict().values()]


def test_training_is_bit_identical_at_one_and_two_threads() -> None:
    x, y = fb.data.mnist_digits("train", limit=256)
    one, two = _train_at(1, x, y), _train_at(2, x, y)
    assert len(one) == len(two) == 8
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    # and training did move the weights
    torch.manual_seed(0)
    assert not torch.equal(one[0], fb.models.LeNet().state_dict()["conv1.weight"])


def test_one_thread_restores_the_count_after_an_error() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"), torch_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_training_flag_restored_and_old_name_is_an_alias() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    x, y = fb.data.mnist_digits("train", limit=32)
    fb.data.train_classifier(net, x, y, epochs=1, batch_size=16)
    assert not net.training
    assert fb.models.train_classifier is fb.data.train_classifier
    assert fb.models.imagenet_photos is fb.data.imagenet_photos


def test_bad_arguments_name_the_argument() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    x, y = fb.data.mnist_digits("train", limit=8)
    with pytest.raises(InvalidArgumentError, match="epochs"):
        fb.data.train_classifier(net, x, y, epochs=0)
    with pytest.raises(InvalidArgumentError, match="labels"):
        fb.data.train_classifier(net, x, y[:4])
    with pytest.raises(InvalidArgumentError, match="threads"):
        fb.data.train_classifier(net, x, y, threads=0)


def test_threads_none_keeps_the_callers_setting() -> None:
    seen: list[int] = []

    class Spy(torch.nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return t

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    x, y = fb.data.mnist_digits("train", limit=16)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fb.data.train_classifier(net, x, y, epochs=1, batch_size=16, preprocess=Spy(), threads=None)
        fb.data.train_classifier(net, x, y, epochs=1, batch_size=16, preprocess=Spy())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [2, 1]
