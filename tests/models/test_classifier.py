from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench.errors import InvalidArgumentError, InvalidTypeError, ModelOutputError


def linear(k: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, k)).eval()


def make(**kw: object) -> fb.models.TorchClassifier:
    args: dict[str, object] = {"input_shape": (1, 28, 28), "num_classes": 10}
    args.update(kw)
    return fb.models.TorchClassifier(linear(), **args)  # type: ignore[arg-type]


def test_is_a_classifier_and_shapes() -> None:
    clf = make()
    assert isinstance(clf, fb.models.Classifier)
    x = torch.rand(7, 1, 28, 28)
    assert clf(x).shape == (7, 10)
    p = clf.probs(x)
    assert p.shape == (7, 10)
    torch.testing.assert_close(p.sum(1), torch.ones(7))
    assert clf.predict(x).shape == (7,)


def test_logits_are_differentiable() -> None:
    clf = make()
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    clf(x)[:, 2].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_probs_have_no_grad_and_match_call() -> None:
    clf = make()
    x = torch.rand(5, 1, 28, 28, requires_grad=True)
    p = clf.probs(x)
    assert not p.requires_grad
    torch.testing.assert_close(p, torch.softmax(clf(x), 1).detach())


def test_counts_evaluations_and_chunks() -> None:
    calls: list[int] = []
    net = linear()
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    clf = fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10, batch_size=16)
    clf.probs(torch.rand(50, 1, 28, 28))
    assert calls == [16, 16, 16, 2]
    assert clf.evaluations == 50
    assert clf.reset_evaluations() == 50 and clf.evaluations == 0


def test_preprocessing_inside_adapter() -> None:
    net = linear()
    clf = make(mean=[0.5], std=[0.25])
    clf.module.load_state_dict(net.state_dict())
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(clf.probs(x), torch.softmax(net((x - 0.5) / 0.25), 1))


def test_resize_inside_adapter() -> None:
    clf = fb.models.TorchClassifier(linear(), input_shape=(1, 14, 14), num_classes=10, resize=(28, 28))
    assert clf.probs(torch.rand(2, 1, 14, 14)).shape == (2, 10)


def test_training_flag_restored_and_warned() -> None:
    net = linear().train()
    with pytest.warns(UserWarning, match="training mode"):
        clf = fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10)
    seen: list[bool] = []
    net[1].register_forward_hook(lambda m, i, o: seen.append(m.training))
    clf.probs(torch.rand(2, 1, 28, 28))
    assert seen == [False]
    assert net.training and net[1].training


def test_eval_module_stays_eval() -> None:
    clf = make()
    clf.probs(torch.rand(2, 1, 28, 28))
    assert not clf.module.training


def test_device_and_dtype_follow_module() -> None:
    net = linear().double()
    clf = fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10)
    assert clf.device == torch.device("cpu") and clf.dtype == torch.float64
    assert clf(torch.rand(2, 1, 28, 28)).dtype == torch.float64


def test_repr_shows_settings() -> None:
    r = repr(make(mean=0.1, std=0.3, bounds=(0, 1)))
    assert "input_shape=(1, 28, 28)" in r and "num_classes=10" in r and "mean=" in r


@pytest.mark.parametrize(
    ("x", "err", "match"),
    [
        (torch.rand(28, 28), InvalidArgumentError, r"x must have shape \(B, 1, 28, 28\)"),
        (torch.rand(2, 3, 28, 28), InvalidArgumentError, r"\(B, 1, 28, 28\), got \(2, 3, 28, 28\)"),
        (torch.rand(2, 1, 32, 32), InvalidArgumentError, r"got \(2, 1, 32, 32\)"),
        (torch.randint(0, 255, (2, 1, 28, 28)), InvalidTypeError, "floating dtype"),
        (torch.full((2, 1, 28, 28), 2.0), InvalidArgumentError, r"bounds \[0, 1\], got values in \[2, 2\]"),
        (torch.full((2, 1, 28, 28), float("nan")), InvalidArgumentError, "NaN or inf"),
        (torch.full((2, 1, 28, 28), float("inf")), InvalidArgumentError, "NaN or inf"),
        (torch.rand(0, 1, 28, 28), InvalidArgumentError, "empty batch"),
        ([[0.0]], InvalidTypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs(x: object, err: type[Exception], match: str) -> None:
    clf = make()
    with pytest.raises(err, match=match):
        clf.probs(x)  # type: ignore[arg-type]


def test_wrong_output_shape() -> None:
    clf = fb.models.TorchClassifier(torch.nn.Flatten().eval(), input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(ModelOutputError, match=r"\(B, num_classes\) = \(2, 10\), got \(2, 784\)"):
        clf.probs(torch.rand(2, 1, 28, 28))


def test_nan_output() -> None:
    class Nan(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 10), float("nan"))

    clf = fb.models.TorchClassifier(Nan().eval(), input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(ModelOutputError, match="NaN"):
        clf.probs(torch.rand(2, 1, 28, 28))


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"mean": [0.1, 0.2]}, InvalidArgumentError, "mean must have 1 or 1 values"),
        ({"std": [0.0]}, InvalidArgumentError, "std must be positive"),
        ({"batch_size": 0}, InvalidArgumentError, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": 2.5}, InvalidTypeError, "batch_size must be an int"),
        ({"bounds": (1, 0)}, InvalidArgumentError, "lower < upper"),
        ({"input_shape": (28, 28)}, InvalidArgumentError, "input_shape must be a"),
        ({"num_classes": 1}, InvalidArgumentError, "num_classes must be an int >= 2"),
        ({"class_names": ["a"]}, InvalidArgumentError, "class_names must hold num_classes=10"),
    ],
)
def test_bad_constructor_arguments(kw: dict[str, object], err: type[Exception], match: str) -> None:
    with pytest.raises(err, match=match):
        make(**kw)


def test_module_type_checked() -> None:
    with pytest.raises(InvalidTypeError, match="module must be a torch.nn.Module"):
        fb.models.TorchClassifier(lambda x: x, input_shape=(1, 28, 28), num_classes=10)  # type: ignore[arg-type]
