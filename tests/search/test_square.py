from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench.errors import InvalidArgumentError, InvalidTypeError
from foolbench.search import PGD, SquareAttack
from foolbench.search._square import square_fraction

TOL = 1e-5


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return fb.models.mnist_digits("test", limit=16)


@pytest.fixture(scope="module")
def square(lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor]) -> fb.search.AttackResult:
    x, y = batch
    return SquareAttack(eps=0.3, queries=200)(lenet, x, y, seed=0)


def test_fools_real_digits_inside_ball_and_bounds(
    lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor], square: fb.search.AttackResult
) -> None:
    _, y = batch
    res = square
    assert res.success_rate >= 0.8
    assert float(res.adversarial.min()) >= 0 and float(res.adversarial.max()) <= 1
    assert float(res.norms.max()) <= 0.3 + TOL
    assert torch.equal(res.success, lenet.predict(res.adversarial) != y)
    # a gradient-free attack spends queries, but stops early on images it has fooled
    assert 1 < res.queries <= 202  # the stripes, at most 200 squares, the final check


def test_beats_its_own_start(
    lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor], square: fb.search.AttackResult
) -> None:
    """The accepted squares matter: 1 query (the stripes) fools far fewer than 200."""
    x, y = batch
    short = SquareAttack(eps=0.3, queries=1)(lenet, x, y, seed=0).success_rate
    assert square.success_rate > short + 0.2, (short, square.success_rate)


def test_targeted(lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    t = (y + 1) % 10
    res = SquareAttack(eps=0.3, queries=200)(lenet, x[:8], y[:8], target=t[:8], seed=0)
    assert res.success_rate >= 0.5
    assert torch.equal(res.success, lenet.predict(res.adversarial) == t[:8])


def test_same_seed_same_result_other_seed_other_result(
    lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    attack = SquareAttack(eps=0.2, queries=20)
    a, b = attack(lenet, x[:8], y[:8], seed=3), attack(lenet, x[:8], y[:8], seed=3)
    c = attack(lenet, x[:8], y[:8], seed=4)
    assert torch.equal(a.adversarial, b.adversarial)
    assert not torch.equal(a.adversarial, c.adversarial)


def test_an_image_does_not_depend_on_when_others_finish(
    lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """Dropping finished images every check_every steps changes no image's result."""
    x, y = batch
    a = SquareAttack(eps=0.3, queries=40, check_every=1)(lenet, x, y, seed=0)
    b = SquareAttack(eps=0.3, queries=40, check_every=1000)(lenet, x, y, seed=0)
    assert torch.allclose(a.adversarial, b.adversarial, atol=1e-6)


def test_gradient_free_where_gradients_are_masked(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    """A model whose gradient is zero everywhere (input rounded to 1/4 steps) stops PGD, not Square."""
    base = fb.models.lenet_mnist()

    class Rounded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = base.module

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            q = (t * 4).round() / 4
            return self.net(q)  # round() has a zero gradient: PGD gets no signal

    masked = fb.models.TorchClassifier(Rounded().eval(), input_shape=(1, 28, 28), num_classes=10)
    x, y = batch
    keep = masked.predict(x) == y
    x, y = x[keep], y[keep]
    pgd = PGD(0.3, steps=20, random_start=False)(masked, x, y).success_rate
    square = SquareAttack(eps=0.3, queries=200)(masked, x, y, seed=0).success_rate
    assert pgd <= 0.1 and square >= 0.5, (pgd, square)


def test_schedule_halves_the_area() -> None:
    assert square_fraction(0.4, 0, 1000) == 0.4
    assert square_fraction(0.4, 2, 1000) == 0.2  # iteration 20 of 10,000
    assert square_fraction(0.4, 999, 1000) == pytest.approx(0.4 / 512)


@pytest.mark.parametrize(
    ("make", "err", "match"),
    [
        (lambda: SquareAttack(eps=-0.1), InvalidArgumentError, r"eps must be a finite number in \[0, inf\)"),
        (lambda: SquareAttack(eps=0.1, queries=0), InvalidArgumentError, "queries must be an int >= 1"),
        (
            lambda: SquareAttack(eps=0.1, p_init=0.0),
            InvalidArgumentError,
            r"p_init must be a finite number in \(0, 1\]",
        ),
        (lambda: SquareAttack(eps=0.1, p_init=1.5), InvalidArgumentError, "p_init"),
        (lambda: SquareAttack(eps=0.1, check_every=0), InvalidArgumentError, "check_every must be an int >= 1"),
        (lambda: SquareAttack(eps=0.1, queries=2.5), InvalidTypeError, "queries must be an int"),
        (
            lambda: SquareAttack(eps=0.1)(fb.models.lenet_mnist(), torch.rand(2, 1, 28, 28), torch.tensor([1])),
            InvalidArgumentError,
            r"labels must have shape \(2,\)",
        ),
        (
            lambda: SquareAttack(eps=0.1)(fb.models.lenet_mnist(), torch.rand(2, 1, 28, 28) * 2, torch.tensor([1, 2])),
            InvalidArgumentError,
            "inside the classifier's bounds",
        ),
        (
            lambda: SquareAttack(eps=0.1)(
                fb.models.lenet_mnist(), torch.rand(2, 1, 28, 28), torch.tensor([1, 2]), seed=-1
            ),
            InvalidArgumentError,
            "seed must be an int >= 0",
        ),
    ],
)
def test_bad_input(make: object, err: type[Exception], match: str) -> None:
    with pytest.raises(err, match=match):
        make()  # type: ignore[operator]


def test_repr_shows_settings() -> None:
    assert repr(SquareAttack(eps=0.3, queries=10)) == "SquareAttack(eps=0.3, queries=10, p_init=0.8)"
