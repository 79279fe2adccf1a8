"""Same seed, same result on CPU, for every search and attack; the global RNG is left as found."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import foolbench as fb

LENET = fb.models.lenet_mnist()
X, Y = fb.models.mnist_digits("test", limit=32)


def evolve(encoding: Any) -> Callable[[], torch.Tensor]:
    return lambda: fb.search.MAPElites(LENET, encoding, batch_size=32, seed=7).run(generations=6, progress=False).images


RUNS: dict[str, Callable[[], torch.Tensor]] = {
    "map-elites direct": evolve(fb.encodings.DirectEncoding((1, 28, 28))),
    "map-elites cppn": evolve(fb.encodings.CPPNEncoding((1, 28, 28))),
    "single-class": lambda: (
        fb.search.SingleClassEvolution(LENET, fb.encodings.DirectEncoding((1, 28, 28)), target=3, batch_size=32, seed=7)
        .run(generations=6, progress=False)
        .images
    ),
    "gradient ascent": lambda: fb.search.GradientAscent(LENET, steps=5, jitter=2, seed=7).run([1, 2]).images,
    "fgsm": lambda: fb.search.FGSM(eps=0.1)(LENET, X, Y).adversarial,
    "pgd": lambda: fb.search.PGD(eps=0.2, steps=5)(LENET, X, Y, seed=7).adversarial,
    "deepfool": lambda: fb.search.DeepFool(steps=5)(LENET, X, Y).adversarial,
    "uap sgd": lambda: (
        fb.search.UniversalPerturbation(eps=0.2, method="sgd", max_passes=2, seed=7).fit(LENET, X).perturbation
    ),
    "uap deepfool": lambda: fb.search.UniversalPerturbation(eps=0.2, max_passes=1, seed=7).fit(LENET, X).perturbation,
    "cppn mutate": lambda: (
        fb.encodings.CPPNEncoding((3, 8, 8))
        .mutate(
            fb.encodings.CPPNEncoding((3, 8, 8)).sample(8, torch.Generator().manual_seed(7)),
            torch.Generator().manual_seed(8),
        )
        .weight
    ),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_same_seed_same_result_and_global_rng_untouched(name: str) -> None:
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = RUNS[name]()
    assert torch.equal(state, torch.random.get_rng_state()), "the global RNG state changed"
    torch.manual_seed(999)  # a different global state must not change the result
    second = RUNS[name]()
    assert torch.equal(first, second)
