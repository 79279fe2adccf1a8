from __future__ import annotations

from typing import Any

import pytest
import torch

import foolbench as fb
from foolbench.data._train import torch_threads, train_classifier
from foolbench.errors import InvalidArgumentError, InvalidTypeError


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


def test_every_submodules_training_flag_is_restored() -> None:
    """train_classifier restored only the root's flag (``module.train(was_training)``), so a BatchNorm kept in eval
    mode inside a training module came back in training mode, and a training child of an eval-mode module came
    back in eval mode."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(1352, 10)
    )
    net[1].eval()  # frozen statistics while the rest trains
    x, y = fb.data.mnist_digits("train", limit=16)
    fb.data.train_classifier(net, x, y, epochs=1, batch_size=16)
    assert [m.training for m in net.modules()] == [True, True, False, True, True]
    net.eval()
    net[3].train()
    fb.data.train_classifier(net, x, y, epochs=1, batch_size=16)
    assert [m.training for m in net.modules()] == [False, False, False, False, True]


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))


def _train(**kw: Any) -> object:
    x, y = fb.data.mnist_digits("train", limit=8)
    return fb.data.train_classifier(kw.pop("module", _net()), x, y, epochs=1, **kw)


_BAD = {
    "module=str": (lambda: _train(module="net"), InvalidTypeError, "module must be a torch.nn.Module, got str"),
    "max_shift=-1": (lambda: _train(max_shift=-1), InvalidArgumentError, "max_shift must be an int >= 0, got -1"),
    "max_shift=1.5": (lambda: _train(max_shift=1.5), InvalidTypeError, "max_shift must be an int >= 0, got float"),
    "max_shift=True": (lambda: _train(max_shift=True), InvalidTypeError, "max_shift must be an int >= 0, got bool"),
    "max_shift=28": (
        lambda: _train(max_shift=28),
        InvalidArgumentError,
        r"max_shift must be smaller than the images' height and width \(28 x 28\), got 28",
    ),
    "seed=-1": (lambda: _train(seed=-1), InvalidArgumentError, "seed must be an int >= 0, got -1"),
    "seed=2**70": (lambda: _train(seed=2**70), InvalidArgumentError, r"seed must be an int in \[0, 2\*\*64 - 1\]"),
    "seed=1.5": (lambda: _train(seed=1.5), InvalidTypeError, "seed must be an int >= 0, got float"),
    "lr=-1": (lambda: _train(lr=-1.0), InvalidArgumentError, r"lr must be a finite number in \(0, inf\), got -1.0"),
    "lr=0": (lambda: _train(lr=0.0), InvalidArgumentError, "lr must be a finite number"),
    "lr=nan": (lambda: _train(lr=float("nan")), InvalidArgumentError, "lr must be a finite number"),
    "lr=str": (lambda: _train(lr="a"), InvalidTypeError, "lr must be a real number, got str"),
    "weight_decay=-1": (
        lambda: _train(weight_decay=-1.0),
        InvalidArgumentError,
        "weight_decay must be a finite number",
    ),
    "preprocess=str": (lambda: _train(preprocess="norm"), InvalidTypeError, "preprocess must be callable or None"),
    "mnist device=tpu9": (lambda: fb.data.mnist_digits(device="tpu9"), InvalidArgumentError, "device must be"),
    "mnist device=3": (lambda: fb.data.mnist_digits(device=3), InvalidTypeError, "device must be a device name"),
    "photos device=tpu9": (lambda: fb.data.imagenet_photos(32, device="tpu9"), InvalidArgumentError, "device must be"),
    "load_model typo": (
        lambda: fb.models.load_model("lenet-mnist", devcie="cpu"),
        InvalidArgumentError,
        r"load_model\('lenet-mnist'\) got unknown setting\(s\) \['devcie'\]; valid: \['batch_size', 'device'\]",
    ),
}


@pytest.mark.parametrize("case", list(_BAD))
def test_bad_arguments_are_refused_naming_them(case: str) -> None:
    """These failed deep inside torch (a RuntimeError from ``randint``, ``manual_seed`` or ``torch.device``, a
    TypeError from ``pad`` or for a misspelt keyword, an AttributeError for a module that is not one), or were
    accepted (``seed=-1``, a shift as large as the image)."""
    call, err, match = _BAD[case]
    with pytest.raises(err, match=match):
        call()


def test_float64_images_train_a_float32_module_as_float32_ones_do() -> None:
    def fresh() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))

    x, y = torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(24) % 4
    a = train_classifier(fresh(), x, y, epochs=1, batch_size=8, max_shift=0)
    b = train_classifier(fresh(), x.double(), y, epochs=1, batch_size=8, max_shift=0)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert p.dtype == q.dtype == torch.float32
        torch.testing.assert_close(p, q)


def test_labels_past_the_modules_outputs_and_noise_on_another_scale_are_named() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    x = torch.rand(16, 1, 8, 8)
    with pytest.raises(InvalidArgumentError, match="labels must be class indices below the module's 4 outputs"):
        train_classifier(net, x, torch.arange(16) % 5, epochs=1, batch_size=8)
    with pytest.raises(InvalidArgumentError, match=r"images must .*\[0, 1\]"):
        train_classifier(net, x * 255, torch.arange(16) % 4, epochs=1, batch_size=8, noise_share=0.5)
    train_classifier(net, x * 255, torch.arange(16) % 4, epochs=1, batch_size=8)  # no noise: the scale is yours
