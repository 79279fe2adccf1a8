from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench.defenses import (
    BitDepthReduction,
    Ensemble,
    FeatureSqueezingDetector,
    GaussianSmoothing,
    MedianSmoothing,
    bit_depth,
    median,
)
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


def test_smoothing_keeps_clean_accuracy(lenet: fb.models.TorchClassifier, digits_test: Digits) -> None:
    x, y = digits_test
    base = float((lenet.predict(x) == y).float().mean())
    for defended in (GaussianSmoothing(lenet, 0.5), MedianSmoothing(lenet, 3), BitDepthReduction(lenet, 1)):
        acc = float((defended.predict(x) == y).float().mean())
        assert acc >= base - 0.05, (defended, acc, base)


def test_bpda_gradient_is_the_gradient_at_the_squeezed_input(
    lenet: fb.models.TorchClassifier, digits_test: Digits
) -> None:
    x = digits_test[0][:8].clone().requires_grad_(True)
    defended = MedianSmoothing(lenet, 3)
    (g_def,) = torch.autograd.grad(defended(x)[:, 3].sum(), x)
    squeezed = fb._filters.median_filter(x.detach(), 3).requires_grad_(True)
    (g_ref,) = torch.autograd.grad(lenet(squeezed)[:, 3].sum(), squeezed)
    assert float(g_def.abs().sum()) > 0
    torch.testing.assert_close(g_def, g_ref)


def test_adaptive_pgd_still_breaks_input_squeezing(lenet: fb.models.TorchClassifier, digits_test: Digits) -> None:
    x, y = digits_test[0][:128], digits_test[1][:128]
    for defended in (MedianSmoothing(lenet, 3), BitDepthReduction(lenet, 3), GaussianSmoothing(lenet, 1.0)):
        res = PGD(eps=0.3, steps=40)(defended, x, y)
        assert res.success_rate >= 0.8, (defended, res.success_rate)


def test_evolution_runs_on_a_defended_model(lenet: fb.models.TorchClassifier) -> None:
    defended = MedianSmoothing(lenet, 3)
    enc = fb.encodings.CPPNEncoding((1, 28, 28))
    res = fb.search.MAPElites(defended, enc, classes=[1, 7], batch_size=64, seed=0).run(
        max_evaluations=20_000, target_confidence=0.99, progress=False
    )
    assert bool(res.fooled(0.99).all()), res.confidence
    assert lenet.evaluations > 0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda c: GaussianSmoothing(c, 0.0), "sigma"),
        (lambda c: GaussianSmoothing(c, -1.0), "sigma"),
        (lambda c: MedianSmoothing(c, 4), "size must be odd"),
        (lambda c: MedianSmoothing(c, 1), "size must be an int >= 3"),
        (lambda c: BitDepthReduction(c, 0), "bits"),
        (lambda c: BitDepthReduction(c, 9), r"bits must be an int in 1\.\.8"),
        (lambda c: FeatureSqueezingDetector(c, [median(3)], threshold=2.5), r"threshold"),
        (lambda c: FeatureSqueezingDetector(c, [median(3)], threshold=-0.1), r"threshold"),
        (lambda c: FeatureSqueezingDetector(c, []), "non-empty"),
    ],
)
def test_bad_arguments(lenet: fb.models.TorchClassifier, make: object, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        make(lenet)  # type: ignore[operator]


def test_feature_squeezing_catches_pgd_but_not_fooling_images(
    lenet: fb.models.TorchClassifier, digits_train: Digits, digits_test: Digits
) -> None:
    det = FeatureSqueezingDetector(lenet, [bit_depth(1), median(3)])
    with pytest.raises(RuntimeError, match="calibrate"):
        det.detect(digits_test[0][:4])
    det.calibrate(digits_train[0][:1000], false_positive_rate=0.05)
    assert det.threshold is not None and 0 <= det.threshold <= 2
    # the rate holds on held-out clean digits
    assert det.detection_rate(digits_test[0]) <= 0.10
    fooling = fb.search.MAPElites(
        lenet, fb.encodings.DirectEncoding((1, 28, 28), mutation_rate=0.02, eta=1.0), batch_size=64, seed=0
    ).run(max_evaluations=30_000, target_confidence=0.9999, progress=False)
    # PGD examples sit near the decision boundary: squeezing moves them, and they are caught
    adv = PGD(eps=0.3, steps=40)(lenet, digits_test[0][:200], digits_test[1][:200]).adversarial
    assert det.detection_rate(adv) >= 0.8
    # fooling images at 99.99% are far from it: squeezing hardly moves them (a measured finding)
    assert float(det.score(fooling.images).max()) < 0.1
    assert det.detection_rate(fooling.images) <= 0.2
    with pytest.raises(InvalidArgumentError, match="false_positive_rate"):
        det.calibrate(digits_train[0][:100], false_positive_rate=1.0)
    with pytest.raises(InvalidTypeError, match=r"squeezers\[0\]"):
        FeatureSqueezingDetector(lenet, [lambda x: x])  # type: ignore[list-item]
