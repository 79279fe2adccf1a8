from __future__ import annotations

import io
import pickle

import pytest
import torch

import foolbench as fb
from foolbench.defenses import (
    BitDepthReduction,
    FeatureSqueezingDetector,
    GaussianSmoothing,
    InputTransformation,
    MedianSmoothing,
    bit_depth,
    median,
)
from foolbench.errors import InvalidArgumentError
from foolbench.search import PGD

Digits = tuple[torch.Tensor, torch.Tensor]


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
    counted = fb.models.CountingClassifier(lenet)
    defended = MedianSmoothing(counted, 3)
    enc = fb.encodings.CPPNEncoding((1, 28, 28))
    res = fb.search.MAPElites(defended, enc, classes=[1, 7], batch_size=64, seed=0).run(
        max_evaluations=20_000, target_confidence=0.99, progress=False
    )
    assert bool(res.fooled(0.99).all()), res.confidence
    assert counted.evaluations >= res.evaluations  # every search evaluation reached the wrapped model


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


def test_squeezer_built_for_other_bounds_is_refused(lenet: fb.models.TorchClassifier) -> None:
    wide = fb.models.TorchClassifier(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval(),
        input_shape=(1, 28, 28),
        num_classes=10,
        bounds=(0, 255),
    )
    with pytest.raises(
        InvalidArgumentError,
        match=r"squeezer '1-bit' was built for bounds \(0, 1\), but the classifier's bounds are \(0, 255\)",
    ):
        InputTransformation(wide, bit_depth(1))
    with pytest.raises(InvalidArgumentError, match=r"squeezers\[1\] '2-bit' was built for bounds \(0, 1\)"):
        FeatureSqueezingDetector(wide, [median(3), bit_depth(2)])
    # built for the classifier's bounds it works, and scores are not all zero
    defended = InputTransformation(wide, bit_depth(1, bounds=(0, 255)))
    x = torch.rand(4, 1, 28, 28) * 255
    assert float(defended.probs(x).max()) > 0.1
    torch.testing.assert_close(defended.probs(x), wide.probs((x > 127.5).float() * 255))
    assert BitDepthReduction(wide, 1).squeezer.bounds == (0.0, 255.0)
    InputTransformation(wide, median(3))  # range-free squeezers fit any bounds
    with pytest.raises(InvalidArgumentError, match="bounds must satisfy lower < upper"):
        bit_depth(1, bounds=(1, 0))


def test_reference_follows_the_wrapped_classifier(lenet: fb.models.TorchClassifier) -> None:
    smooth = MedianSmoothing(lenet, 3)
    assert smooth.reference() is smooth
    fast = MedianSmoothing(lenet.replace(precision="bf16"), 3)
    ref = fast.reference()
    assert ref is not fast and ref.classifier.precision == "fp32" and ref.squeezer is fast.squeezer


def test_squeezer_defenses_survive_a_pickle_round_trip(lenet: fb.models.TorchClassifier, digits_test: Digits) -> None:
    """Squeezers held lambdas: a defended classifier could not be pickled, so torch.save(model) and
    process or Ray executors failed with "Can't pickle local object 'median.<locals>.<lambda>'"."""
    x = digits_test[0][:16]
    defended = [
        GaussianSmoothing(lenet, 0.5),
        MedianSmoothing(lenet, 3),
        BitDepthReduction(lenet, 2),
        fb.defenses.Ensemble([lenet, MedianSmoothing(lenet, 3)], combine="vote"),
    ]
    for clf in defended:
        copy = pickle.loads(pickle.dumps(clf))
        assert repr(copy) == repr(clf)
        assert torch.equal(copy.probs(x), clf.probs(x)), clf
        buffer = io.BytesIO()
        torch.save(clf, buffer)
        buffer.seek(0)
        assert torch.equal(torch.load(buffer, weights_only=False).probs(x), clf.probs(x)), clf
    det = FeatureSqueezingDetector(lenet, [bit_depth(1), median(3)], threshold=0.5)
    assert torch.equal(pickle.loads(pickle.dumps(det)).score(x), det.score(x))


def _stretch(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) * 1.5 + 0.5


def test_a_squeezer_leaving_the_bounds_is_clamped_to_them(lenet: fb.models.TorchClassifier) -> None:
    """The squeezed batch went to the classifier unclamped (the detector clamps it): a contrast stretch
    failed with "x must lie inside the classifier's bounds", blaming the caller's valid x."""
    x = fb.models.mnist_digits("test", limit=4)[0]
    for st in (False, True):
        defended = InputTransformation(lenet, fb.defenses.Squeezer("contrast x1.5", _stretch, straight_through=st))
        expected = lenet.log_probs(_stretch(x).clamp(0.0, 1.0))
        torch.testing.assert_close(defended.log_probs(x), expected, rtol=0, atol=0)
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(defended(xg)[:, 3].sum(), xg)
        assert bool(grad.abs().sum() > 0)
        if st:  # straight through: the clamp passes the gradient too, at pixels stretched past the bounds
            squeezed = _stretch(x).clamp(0.0, 1.0).requires_grad_(True)
            (ref,) = torch.autograd.grad(lenet(squeezed)[:, 3].sum(), squeezed)
            torch.testing.assert_close(grad, ref)
            assert bool((grad[(x == 0) | (x == 1)] != 0).any())


def test_shipped_squeezers_inside_the_bounds_are_not_changed_by_the_clamp(lenet: fb.models.TorchClassifier) -> None:
    x = torch.cat([fb.models.mnist_digits("test", limit=8)[0], torch.ones(2, 1, 28, 28), torch.zeros(2, 1, 28, 28)])
    for squeezer in (median(3), median(5), bit_depth(1), bit_depth(4)):
        out = squeezer(x)
        assert bool((out >= 0).all() and (out <= 1).all())
        defended = InputTransformation(lenet, squeezer)
        assert torch.equal(defended.log_probs(x), lenet.log_probs(out))
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(defended(xg)[:, 2].sum(), xg)
        squeezed = out.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(lenet(squeezed)[:, 2].sum(), squeezed)
        assert torch.equal(grad, ref)  # BPDA: the gradient at the squeezed input, unchanged


def test_gaussian_names_its_exact_sigma(lenet: fb.models.TorchClassifier) -> None:
    """The name wrote sigma with six digits: sigma 0.5 and 0.4999996 shared an identity (search checkpoints)."""
    assert fb.defenses.gaussian(0.5).name == "gaussian sigma=0.5"  # short where :g is exact, as before
    assert fb.defenses.gaussian(0.4999996).name == "gaussian sigma=0.4999996"
    assert fb.defenses.gaussian(1 / 3).name == f"gaussian sigma={1 / 3!r}"
    assert GaussianSmoothing(lenet, 0.5).identity() != GaussianSmoothing(lenet, 0.4999996).identity()
