from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench.errors import InvalidArgumentError, InvalidTypeError
from foolbench.search import FGSM, PGD, DeepFool

TOL = 1e-5


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return fb.models.mnist_digits("test", limit=64)


def test_one_sign_step_fools_logistic_regression() -> None:
    """The classic linear example: one sign step of 0.5 lifts p(class 1) from 0.0474 to 0.88."""
    w = torch.tensor([-1.0, -1, 1, -1, 1, -1, 1, 1, -1, 1])
    x = torch.tensor([2.0, -1, 3, -2, 2, 2, 1, -4, 5, 1])
    lin = torch.nn.Linear(10, 2).eval()
    with torch.no_grad():  # logit(class 1) - logit(class 0) = w.x
        lin.weight.copy_(torch.stack([torch.zeros(10), w]))
        lin.bias.zero_()
    net = torch.nn.Sequential(torch.nn.Flatten(), lin).eval()
    clf = fb.models.TorchClassifier(net, input_shape=(1, 1, 10), num_classes=2, bounds=(-10, 10))
    img = x.view(1, 1, 1, 10)
    assert float(clf.probs(img)[0, 1]) == pytest.approx(0.0474, abs=5e-4)
    res = FGSM(eps=0.5)(clf, img, torch.tensor([0]), target=1)  # targeted: towards class 1
    assert float(clf.probs(res.adversarial)[0, 1]) == pytest.approx(0.88, abs=5e-3)
    assert torch.allclose(res.adversarial - img, 0.5 * w.view(1, 1, 1, 10))


@pytest.mark.parametrize(
    "attack", [FGSM(0.2), PGD(0.2, steps=10), PGD(1.5, steps=10, norm="2"), PGD(0.2, steps=10, random_start=False)]
)
def test_stays_in_bounds_and_ball(
    attack: fb.search.Attack, lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    res = attack(lenet, x, y)
    assert res.adversarial.shape == x.shape
    assert float(res.adversarial.min()) >= 0 and float(res.adversarial.max()) <= 1
    assert float(res.norms.max()) <= attack.eps + TOL  # type: ignore[operator]
    assert torch.allclose(fb.search.lp_norm(res.adversarial - x, attack.norm), res.norms)
    # success is re-checked on the returned images
    assert torch.equal(res.success, lenet.predict(res.adversarial) != y)


def test_pgd_beats_fgsm_and_fools_most(
    lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    fgsm = FGSM(0.2)(lenet, x, y).success_rate
    pgd = PGD(0.2, steps=20)(lenet, x, y).success_rate
    assert pgd >= 0.9 and pgd > fgsm


def test_targeted_pgd(lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    t = (y + 1) % 10
    res = PGD(0.3, steps=20)(lenet, x, y, target=t)
    assert res.success_rate >= 0.9
    assert torch.equal(res.success, lenet.predict(res.adversarial) == t)


def test_deepfool_finds_small_perturbations(
    lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    res = DeepFool(steps=50)(lenet, x, y)
    assert res.success_rate >= 0.95 and res.eps is None
    # DeepFool's L2 perturbations are much smaller than PGD's L2 budget that reaches similar success
    assert float(res.norms[res.success].median()) < 2.5
    res_inf = DeepFool(steps=50, norm="inf")(lenet, x, y)
    assert res_inf.success_rate >= 0.9 and float(res_inf.norms[res_inf.success].median()) < 0.3


def test_sweep_gives_results_per_eps(
    lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    results = PGD(0.1, steps=10).sweep(lenet, x, y, eps=[0.0, 0.1, 0.3])
    rates = [r.success_rate for r in results]
    assert [r.eps for r in results] == [0.0, 0.1, 0.3]
    assert rates[0] <= 0.05 and rates[0] <= rates[1] <= rates[2]


def test_training_flag_restored_and_seeded(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    net = fb.models.LeNet().train()
    with pytest.warns(UserWarning):
        clf = fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10)
    x, y = batch
    a = PGD(0.1, steps=3)(clf, x, y, seed=1)
    b = PGD(0.1, steps=3)(clf, x, y, seed=1)
    assert net.training and torch.equal(a.adversarial, b.adversarial)


@pytest.mark.parametrize(
    ("make", "kw", "err", "match"),
    [
        (lambda: FGSM(-0.1), {}, InvalidArgumentError, r"eps must be a finite number in \[0, inf\)"),
        (lambda: PGD(0.1, norm="1"), {}, InvalidArgumentError, "norm must be one of 'inf', '2'"),
        (lambda: PGD(0.1, steps=0), {}, InvalidArgumentError, "steps must be an int >= 1"),
        (lambda: DeepFool(candidates=1), {}, InvalidArgumentError, "candidates must be an int >= 2"),
        (
            lambda: FGSM(0.1)(fb.models.lenet_mnist(), torch.rand(4, 1, 28, 28), torch.tensor([1, 2])),
            {},
            InvalidArgumentError,
            r"labels must have shape \(4,\)",
        ),
        (
            lambda: FGSM(0.1)(fb.models.lenet_mnist(), torch.rand(2, 1, 28, 28), torch.tensor([1, 10])),
            {},
            InvalidArgumentError,
            r"class indices in \[0, 9\]",
        ),
        (
            lambda: FGSM(0.1)(fb.models.lenet_mnist(), torch.rand(2, 1, 28, 28), torch.tensor([1.0, 2.0])),
            {},
            InvalidTypeError,
            "integer class indices",
        ),
        (
            lambda: FGSM(0.1)(fb.models.lenet_mnist(), torch.rand(2, 1, 28, 28) + 1, torch.tensor([1, 2])),
            {},
            InvalidArgumentError,
            "inside the classifier's bounds",
        ),
        (
            lambda: PGD(0.1)(
                fb.models.lenet_mnist(), torch.rand(2, 1, 28, 28), torch.tensor([1, 2]), target=torch.tensor([1, 3])
            ),
            {},
            InvalidArgumentError,
            "target must differ from labels",
        ),
        (
            lambda: DeepFool()(fb.models.lenet_mnist(), torch.rand(2, 1, 28, 28), torch.tensor([1, 2]), target=3),
            {},
            InvalidArgumentError,
            "DeepFool is untargeted",
        ),
    ],
)
def test_bad_input(make: object, kw: object, err: type[Exception], match: str) -> None:
    with pytest.raises(err, match=match):
        make()  # type: ignore[operator]
