"""RandomSearch: fresh random genomes every generation, each class's best kept (the baseline evolution must beat)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import foolbench as fb
from foolbench.encodings import CPPNEncoding, DirectEncoding
from foolbench.errors import CheckpointError, InvalidArgumentError

CPPN = CPPNEncoding((1, 28, 28))


def test_keeps_each_class_best_of_the_samples(lenet: fb.models.TorchClassifier) -> None:
    """The archive equals a hand-written running maximum over the same random draws."""
    rs = fb.search.RandomSearch(lenet, CPPN, classes=[3, 8, 0], batch_size=32, seed=5)
    res = rs.run(generations=4, progress=False)
    rng = torch.Generator().manual_seed(5)
    best = torch.full((3,), -torch.inf)
    for _ in range(4):
        lp = lenet.log_probs(CPPN.render(CPPN.sample(32, rng)))[:, [3, 8, 0]]
        best = torch.maximum(best, lp.max(0).values)
    assert torch.allclose(rs.best_log_probs(), best, atol=1e-6)
    assert torch.allclose(res.confidence, best.double().exp(), atol=1e-6)
    assert res.evaluations == 128 and res.settings["method"] == "random_search"
    assert "parents" not in res.settings and "mutation_schedule" not in res.settings
    # the history is a running maximum: it never falls
    assert bool((res.history.confidence.diff(dim=0) >= 0).all())


def test_never_mutates(lenet: fb.models.TorchClassifier, monkeypatch: pytest.MonkeyPatch) -> None:
    enc = DirectEncoding((1, 28, 28))

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("RandomSearch mutated a genome")

    monkeypatch.setattr(enc, "mutate", forbidden)
    res = fb.search.RandomSearch(lenet, enc, batch_size=16, seed=0).run(generations=3, progress=False)
    assert res.evaluations == 48


def test_evolution_beats_it_at_equal_budget(lenet: fb.models.TorchClassifier) -> None:
    """The paper's point, on MNIST: uniform noise almost never looks like a digit, evolved noise does.

    (This LeNet calls all noise an 8, so random sampling fools that one class and no other.)
    """
    enc = DirectEncoding((1, 28, 28), mutation_rate=0.02, eta=1.0)
    budget = {"max_evaluations": 12_800, "progress": False}
    rand = fb.search.RandomSearch(lenet, enc, batch_size=64, seed=0).run(**budget)
    evo = fb.search.MAPElites(lenet, enc, batch_size=64, seed=0).run(**budget)
    assert rand.evaluations == evo.evaluations
    assert int(rand.fooled(0.9).sum()) <= 1 and int(evo.fooled(0.9).sum()) >= 9
    assert float(evo.confidence.median()) > 0.99 and float(rand.confidence.median()) < 0.1


def test_resume_is_bit_for_bit(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    whole = fb.search.RandomSearch(lenet, CPPN, batch_size=16, seed=1).run(generations=6, progress=False)
    ckpt = tmp_path / "rs.pt"
    fb.search.RandomSearch(lenet, CPPN, batch_size=16, seed=1).run(generations=3, progress=False, checkpoint=ckpt)
    resumed = fb.search.RandomSearch(lenet, CPPN, batch_size=16, seed=1).run(
        generations=6, progress=False, checkpoint=ckpt
    )
    assert torch.equal(whole.confidence, resumed.confidence) and torch.equal(whole.images, resumed.images)
    # a MAP-Elites search with the same settings is another configuration: its checkpoint is refused
    with pytest.raises(CheckpointError):
        fb.search.MAPElites(lenet, CPPN, batch_size=16, seed=1).run(generations=8, progress=False, checkpoint=ckpt)


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"batch_size": 0}, "batch_size"), ({"classes": [10]}, "classes"), ({"verify": "yes"}, "verify")],
)
def test_bad_arguments(lenet: fb.models.TorchClassifier, kw: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        fb.search.RandomSearch(lenet, CPPN, **kw)  # type: ignore[arg-type]


def test_mutation_options_are_not_taken(lenet: fb.models.TorchClassifier) -> None:
    with pytest.raises(TypeError, match="parents"):
        fb.search.RandomSearch(lenet, CPPN, parents="uniform")  # type: ignore[call-arg]
