from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench.defenses import Ensemble
from foolbench.errors import InvalidArgumentError, InvalidTypeError
from foolbench.search import PGD

Digits = tuple[torch.Tensor, torch.Tensor]


def test_ensemble_mean_probs_is_the_average(
    lenet: fb.models.TorchClassifier, mlp_mnist: fb.models.TorchClassifier, digits_test: Digits
) -> None:
    x = digits_test[0][:64]
    ens = Ensemble([lenet, mlp_mnist])
    expected = (lenet.probs(x) + mlp_mnist.probs(x)) / 2
    torch.testing.assert_close(ens.probs(x), expected, rtol=1e-5, atol=1e-6)
    logits = Ensemble([lenet, mlp_mnist], combine="mean_logits").probs(x)
    torch.testing.assert_close(logits, torch.softmax((lenet(x) + mlp_mnist(x)) / 2, 1), rtol=1e-5, atol=1e-6)


def test_ensemble_vote_follows_the_majority(
    lenet: fb.models.TorchClassifier,
    mlp_mnist: fb.models.TorchClassifier,
    cnn_mnist: fb.models.TorchClassifier,
    digits_test: Digits,
) -> None:
    x, y = digits_test
    ens = Ensemble([lenet, mlp_mnist, cnn_mnist], combine="vote")
    preds = torch.stack([m.predict(x) for m in (lenet, mlp_mnist, cnn_mnist)])
    majority = torch.mode(preds, 0).values
    agree = (preds == majority).sum(0) >= 2
    assert torch.equal(ens.predict(x)[agree], majority[agree])
    member_acc = (preds == y).float().mean(1)
    assert float((ens.predict(x) == y).float().mean()) >= float(member_acc.mean())  # the vote helps
    # gradients flow (through the mean probabilities), so PGD still runs on a voting ensemble
    res = PGD(eps=0.3, steps=20)(ens, x[:64], y[:64])
    assert res.success_rate >= 0.5


def test_ensemble_bad_members(lenet: fb.models.TorchClassifier) -> None:
    other = fb.models.TorchClassifier(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5)).eval(), input_shape=(1, 28, 28), num_classes=5
    )
    with pytest.raises(InvalidArgumentError, match=r"classifiers\[1\] has num_classes=5"):
        Ensemble([lenet, other])
    small = fb.models.TorchClassifier(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval(), input_shape=(1, 8, 8), num_classes=10
    )
    with pytest.raises(InvalidArgumentError, match="input_shape"):
        Ensemble([lenet, small])
    with pytest.raises(InvalidArgumentError, match="at least 2"):
        Ensemble([lenet])
    with pytest.raises(InvalidArgumentError, match="combine"):
        Ensemble([lenet, lenet], combine="max")
    with pytest.raises(InvalidTypeError, match=r"classifiers\[1\]"):
        Ensemble([lenet, torch.nn.Linear(2, 2)])  # type: ignore[list-item]


def test_ensemble_keeps_one_member_list(lenet: fb.models.TorchClassifier, mlp_mnist: fb.models.TorchClassifier) -> None:
    ens = Ensemble([lenet, mlp_mnist])
    assert list(ens.members) == [lenet, mlp_mnist]
    assert not any(k.startswith("_members") for k in vars(ens))
    assert fb.models.weights_digest(ens) != fb.models.weights_digest(lenet)
    fast = Ensemble([lenet.replace(precision="bf16"), mlp_mnist])
    ref = fast.reference()
    assert isinstance(ref, Ensemble) and list(ref.members)[1] is mlp_mnist
    assert Ensemble([lenet, mlp_mnist]).reference() is not None


class Scaled(fb.models.BaseClassifier):
    """Logits ``scale * (v, 0, -v)`` from the first pixel ``v``: a tiny, very confident model."""

    def __init__(self, scale: float) -> None:
        super().__init__(input_shape=(1, 2, 2), num_classes=3)
        self.scale = scale

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)[:, :1]
        return self.scale * torch.cat([v, 0 * v, -v], 1)


def test_ensemble_vote_stays_finite_when_a_mean_probability_underflows() -> None:
    """A class with no vote got log(0 + 1e-3 * exp(log_mean)): with a logit gap past ~104 the mean
    probability underflowed to 0 in float32, its logit was -inf and probs/predict raised ModelOutputError."""
    x = torch.zeros(2, 1, 2, 2)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 1.0, 0.1
    ens = Ensemble([Scaled(60.0), Scaled(70.0)], combine="vote")
    logits = ens(x)
    assert bool(torch.isfinite(logits).all()), logits
    assert ens.predict(x).tolist() == [0, 0]
    assert float(ens.probs(x)[0, 0]) == pytest.approx(1.0)
    # where nothing underflows, the scores are the vote shares as before
    outs = torch.stack([m(x) for m in ens.members])
    mean = torch.softmax(outs, 2).mean(0)
    votes = torch.nn.functional.one_hot(outs.argmax(2), 3).sum(0).float()
    expected = torch.log((votes + 1e-3 * mean) / (2 + 1e-3))
    torch.testing.assert_close(logits[1], expected[1])


def test_ensemble_refresh_refreshes_its_members() -> None:
    """An ensemble's network is itself, so refresh() counted it and no member: a member scoring with a folded
    copy kept scores of weights changed through .data."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(8, 3)
    ).eval()
    member = fb.models.TorchClassifier(net, input_shape=(1, 4, 4), num_classes=3, fold_batchnorm=True)
    ens = fb.defenses.Ensemble([member, member.reference()])
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    ens.probs(x)  # builds the member's folded copy
    with torch.no_grad():
        net[0].weight.data.mul_(-3.0)  # through .data: only refresh() can say so
    ens.refresh()
    torch.testing.assert_close(member.probs(x), member.reference().probs(x), rtol=0, atol=1e-5)


def test_ensemble_refuses_members_that_order_their_classes_differently() -> None:
    """Members were checked for their number of classes only: other class orders were averaged index by index."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    make = lambda names: fb.models.TorchClassifier(net, input_shape=(1, 2, 2), num_classes=3, class_names=names)
    cat_dog, bird_first = make(["cat", "dog", "bird"]), make(["bird", "dog", "cat"])
    with pytest.raises(InvalidArgumentError, match=r"classifiers\[2\] has class_names=\['bird', 'dog', 'cat'\]"):
        Ensemble([cat_dog, make(None), bird_first])
    # default names ("0", "1", ...) agree with any; the same names in the same order are one set of classes
    assert Ensemble([make(None), cat_dog, make(["cat", "dog", "bird"])]).num_classes == 3
    assert Ensemble([make(None), bird_first]).class_names == ["0", "1", "2"]
