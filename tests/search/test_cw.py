from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench.errors import InvalidArgumentError
from foolbench.search import PGD, CarliniWagnerL2, DeepFool


@pytest.fixture(scope="module")
def batch(lenet: fb.models.TorchClassifier) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = fb.models.mnist_digits("test", limit=24)
    keep = lenet.predict(x) == y  # correctly classified digits: every success needs a real perturbation
    return x[keep][:16], y[keep][:16]


@pytest.fixture(scope="module")
def cw(lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor]) -> fb.search.AttackResult:
    x, y = batch
    return CarliniWagnerL2(steps=50, binary_steps=3)(lenet, x, y)


def test_fools_real_digits_inside_bounds(
    lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor], cw: fb.search.AttackResult
) -> None:
    x, y = batch
    assert cw.success_rate >= 0.9 and cw.eps is None and cw.norm == "2"
    assert float(cw.adversarial.min()) >= 0 and float(cw.adversarial.max()) <= 1
    assert torch.equal(cw.success, lenet.predict(cw.adversarial) != y)
    assert torch.allclose(cw.norms, (cw.adversarial - x).flatten(1).norm(dim=1))
    # failures come back unchanged
    assert bool((cw.norms[~cw.success] == 0).all())


def test_smaller_than_pgd_l2_and_about_deepfool(
    lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor], cw: fb.search.AttackResult
) -> None:
    """At the L2 radius of CW's median perturbation, PGD-L2 fools fewer images than CW does;
    CW's perturbations are no larger than DeepFool's minimal ones (within 10%)."""
    x, y = batch
    median = float(cw.norms[cw.success].median())
    pgd = PGD(median, steps=40, norm="2")(lenet, x, y, seed=0).success_rate
    assert pgd < cw.success_rate - 0.2, (pgd, cw.success_rate, median)
    df = DeepFool(steps=50)(lenet, x, y)
    assert median <= 1.1 * float(df.norms[df.success].median())


def test_binary_search_shrinks_the_perturbation(
    lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor], cw: fb.search.AttackResult
) -> None:
    x, y = batch
    one = CarliniWagnerL2(steps=50, binary_steps=1)(lenet, x, y)
    both = one.success & cw.success
    assert float(cw.norms[both].sum()) < float(one.norms[both].sum())


def test_targeted_and_confidence(lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    t = (y + 1) % 10
    res = CarliniWagnerL2(steps=40, binary_steps=2, confidence=2.0)(lenet, x[:8], y[:8], target=t[:8])
    assert res.success_rate >= 0.75
    logits = lenet.log_probs(res.adversarial[res.success])
    tt = t[:8][res.success]
    own = logits.gather(1, tt[:, None])[:, 0]
    other = logits.scatter(1, tt[:, None], -torch.inf).amax(1)
    assert bool((own - other >= 2.0 - 1e-4).all())


def test_deterministic(lenet: fb.models.TorchClassifier, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    a = CarliniWagnerL2(steps=10, binary_steps=2)(lenet, x[:4], y[:4], seed=1)
    b = CarliniWagnerL2(steps=10, binary_steps=2)(lenet, x[:4], y[:4], seed=2)
    assert torch.equal(a.adversarial, b.adversarial)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"steps": 0}, "steps must be an int >= 1"),
        ({"binary_steps": 0}, "binary_steps must be an int >= 1"),
        ({"initial_const": 0.0}, r"initial_const must be a finite number in \(0, inf\)"),
        ({"lr": -1.0}, "lr must be a finite number"),
        ({"confidence": float("nan")}, "confidence must be a finite number"),
    ],
)
def test_bad_arguments(kw: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        CarliniWagnerL2(**kw)  # type: ignore[arg-type]


def test_bad_call(lenet: fb.models.TorchClassifier) -> None:
    with pytest.raises(InvalidArgumentError, match="target must differ from labels"):
        CarliniWagnerL2(steps=1)(lenet, torch.rand(2, 1, 28, 28), torch.tensor([1, 2]), target=torch.tensor([1, 3]))
