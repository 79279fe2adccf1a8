from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench.errors import InvalidArgumentError
from foolbench.search import UniversalPerturbation, fooling_rate, transfer_matrix


@pytest.mark.parametrize("method", ["sgd", "deepfool"])
def test_uap_fools_held_out_digits(
    method: str,
    lenet: fb.models.TorchClassifier,
    digits_train: tuple[torch.Tensor, torch.Tensor],
    digits_test: tuple[torch.Tensor, torch.Tensor],
) -> None:
    fit = digits_train[0][:200]
    held_out = digits_test[0][:500]
    passes = 8 if method == "sgd" else 2
    uap = UniversalPerturbation(eps=0.3, method=method, max_passes=passes, batch_size=32, seed=0).fit(lenet, fit)
    assert float(uap.perturbation.abs().max()) <= 0.3 + 1e-6
    rate = fooling_rate(lenet, held_out, uap.perturbation)
    noise = torch.empty(1, 28, 28).uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(0))
    baseline = fooling_rate(lenet, held_out, noise)  # random noise of the same size
    assert rate >= 0.2 and rate > 3 * baseline, (rate, baseline)
    assert len(uap.history) == uap.passes


def test_l2_projection(lenet: fb.models.TorchClassifier, digits_train: tuple[torch.Tensor, torch.Tensor]) -> None:
    uap = UniversalPerturbation(eps=3.0, norm="2", method="sgd", max_passes=2, seed=0).fit(lenet, digits_train[0][:64])
    assert float(uap.perturbation.norm()) <= 3.0 + 1e-4


def test_transfer_matrix(
    lenet: fb.models.TorchClassifier,
    mlp_mnist: fb.models.TorchClassifier,
    digits_train: tuple[torch.Tensor, torch.Tensor],
    digits_test: tuple[torch.Tensor, torch.Tensor],
) -> None:
    models = {"lenet": lenet, "mlp": mlp_mnist}
    uaps = {
        n: UniversalPerturbation(eps=0.3, method="sgd", max_passes=4, batch_size=32, seed=0)
        .fit(m, digits_train[0][:200])
        .perturbation
        for n, m in models.items()
    }
    names, rates = transfer_matrix(models, uaps, digits_test[0][:300])
    assert names == ["lenet", "mlp"] and rates.shape == (2, 2)
    assert float(rates[0, 0]) == pytest.approx(fooling_rate(lenet, digits_test[0][:300], uaps["lenet"]))
    with pytest.raises(InvalidArgumentError, match="missing"):
        transfer_matrix(models, {"lenet": uaps["lenet"]}, digits_test[0][:10])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"eps": -1}, "eps"),
        ({"eps": 0.1, "norm": "1"}, "norm must be one of"),
        ({"eps": 0.1, "method": "adam"}, "method must be one of"),
        ({"eps": 0.1, "delta": 2}, "delta"),
        ({"eps": 0.1, "max_passes": 0}, "max_passes"),
    ],
)
def test_bad_arguments(kw: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        UniversalPerturbation(**kw)  # type: ignore[arg-type]


def test_bad_perturbation(lenet: fb.models.TorchClassifier) -> None:
    with pytest.raises(InvalidArgumentError, match=r"perturbation must have shape \(1, 28, 28\)"):
        fooling_rate(lenet, torch.rand(2, 1, 28, 28), torch.zeros(3, 28, 28))
