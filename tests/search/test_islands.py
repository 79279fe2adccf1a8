"""MAPElites(islands=K): independent archives, one elite per class in each, the best over them reported."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

import foolbench as fb
from foolbench.encodings import CPPNEncoding, DirectEncoding
from foolbench.errors import CheckpointError, InvalidArgumentError
from foolbench.search import MAPElites
from tests.search.test_no_sync import _trapped_generations

ENC = DirectEncoding((1, 28, 28), mutation_rate=0.02, eta=1.0)
CLASSES = [1, 4, 7]


def islands(clf: fb.models.TorchClassifier, k: int = 2, **kw: Any) -> MAPElites:
    kw.setdefault("batch_size", 8)
    return MAPElites(clf, ENC, classes=CLASSES, seed=0, islands=k, **kw)


class Recorder:
    """A parent selector that records the fitness it is shown and draws the niches it is told to."""

    def __init__(self, picks: list[int]) -> None:
        self.picks = picks
        self.seen: list[torch.Tensor] = []

    def __call__(
        self, fitness: torch.Tensor, occupied: torch.Tensor, n: int, generator: torch.Generator
    ) -> torch.Tensor:
        self.seen.append(fitness.clone())
        return torch.tensor(self.picks, device=fitness.device)[torch.arange(n) % len(self.picks)]

    def config(self) -> dict[str, Any]:
        return {"name": "recorder", "picks": self.picks}


def told(s: MAPElites, rows: list[list[float]]) -> torch.Tensor:
    """Ask a batch and tell it log-probabilities built from ``rows`` (B, M) of probabilities."""
    s.ask(len(rows))
    p = torch.tensor(rows, dtype=torch.float32)
    return torch.as_tensor(s.tell(p.log()))


def test_a_child_competes_only_in_its_island_and_the_best_is_reported(lenet: fb.models.TorchClassifier) -> None:
    s = islands(lenet, 2)
    assert len(s.archive) == 6 and s.archive.classes.tolist() == CLASSES * 2
    # generation 0 deals its children out in turn: rows 0, 2 to island 0; rows 1, 3 to island 1
    told(s, [[0.5, 0.1, 0.1], [0.9, 0.2, 0.1], [0.1, 0.3, 0.1], [0.1, 0.1, 0.05]])
    fit = s.archive.fitness.exp().view(2, 3)
    assert torch.allclose(fit[0], torch.tensor([0.5, 0.3, 0.1])), "island 0 holds its own children's best"
    assert torch.allclose(fit[1], torch.tensor([0.9, 0.2, 0.1])), "island 1 holds its own children's best"
    res = s.result()
    assert torch.allclose(res.confidence.float(), torch.tensor([0.9, 0.3, 0.1]))
    # the reported image of each class is the elite of the island that holds its best
    best = torch.stack([s.archive.genomes[3], s.archive.genomes[1], s.archive.genomes[0]])
    assert torch.equal(res.images, s.images(best))
    assert res.history.confidence.shape == (1, 3)


def test_children_go_to_their_parents_island_and_the_count_is_of_classes(
    lenet: fb.models.TorchClassifier,
) -> None:
    sel = Recorder(picks=[4])  # niche 4: class 4 in island 1
    s = islands(lenet, 2, parents=sel)
    told(s, [[0.5, 0.1, 0.1], [0.9, 0.2, 0.1]])
    before = s.archive.fitness.clone()
    # every child beats every elite, but all descend from island 1's elite: island 0 is untouched
    improved = told(s, [[0.99, 0.98, 0.97]] * 4)
    assert torch.equal(s.archive.fitness[:3], before[:3])
    assert torch.allclose(s.archive.fitness[3:].exp(), torch.tensor([0.99, 0.98, 0.97]))
    assert int(improved) == 3, "tell counts classes whose best rose, not niches"
    assert s.result().found_at.tolist() == [6, 6, 6]


def test_parent_selection_sees_each_class_best_over_the_islands(lenet: fb.models.TorchClassifier) -> None:
    sel = Recorder(picks=[0])
    s = islands(lenet, 3, parents=sel)
    told(s, [[0.2, 0.1, 0.1], [0.6, 0.1, 0.3], [0.4, 0.5, 0.2]])
    s.ask()
    best = torch.tensor([0.6, 0.5, 0.3]).log()
    seen = s.parents.seen  # type: ignore[attr-defined]  # the search's own copy of the selector
    assert torch.allclose(seen[-1], best.repeat(3)), "a class met in one island is met in all"
    s.cancel()
    # the library's selectors then leave a class that one island has fooled alone in every island
    t = islands(lenet, 2, parents=fb.search.UnmetFirst(confidence=0.8), batch_size=4)
    told(t, [[0.9, 0.1, 0.1], [0.2, 0.1, 0.1], [0.1, 0.1, 0.1], [0.1, 0.1, 0.1]])
    t.ask(400)
    assert t._picked is not None
    assert not bool(((t._picked % 3) == 0).any()), "class 1 reached 0.8 in island 0: no parents from island 1's"
    assert set((t._picked // 3).tolist()) == {0, 1}


def test_one_island_keeps_the_plain_configuration(lenet: fb.models.TorchClassifier) -> None:
    """islands=1 records nothing, so checkpoints and suite cells from before the option still fit."""
    b = MAPElites(lenet, ENC, classes=CLASSES, batch_size=16, seed=3, islands=1)
    assert len(b.archive) == 3 and "islands" not in b.state_dict()["config"]
    a = MAPElites(lenet, ENC, classes=CLASSES, batch_size=16, seed=3).run(generations=4, progress=False)
    assert torch.equal(a.images, b.run(generations=4, progress=False).images) and "islands" not in a.settings
    c = MAPElites(lenet, ENC, classes=CLASSES, batch_size=16, seed=3, islands=2).run(generations=4, progress=False)
    assert c.settings["islands"] == 2
    assert not torch.equal(a.images, c.images)


def test_same_seed_same_result_and_resume(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    def make(k: int = 2) -> MAPElites:
        return MAPElites(lenet, ENC, classes=CLASSES, batch_size=16, seed=5, islands=k)

    whole = make().run(generations=6, progress=False)
    assert torch.equal(make().run(generations=6, progress=False).images, whole.images)
    ckpt = tmp_path / "islands.pt"
    make().run(generations=3, progress=False, checkpoint=ckpt)
    resumed = make().run(generations=6, progress=False, checkpoint=ckpt)
    assert torch.equal(resumed.images, whole.images)
    assert torch.equal(resumed.confidence, whole.confidence)
    assert torch.equal(resumed.found_at, whole.found_at)
    with pytest.raises(CheckpointError):  # another island count is another search
        make(3).run(generations=6, progress=False, checkpoint=ckpt)


def test_focus_niches_are_classes_in_every_island(lenet: fb.models.TorchClassifier) -> None:
    s = MAPElites(lenet, ENC, batch_size=8, seed=0, islands=3, parents=fb.search.Focus([2, 7], share=1.0))
    assert s.parents.niches == [2, 7, 12, 17, 22, 27]  # type: ignore[attr-defined]
    s.step()
    s.ask(300)
    assert s._picked is not None and set((s._picked % 10).tolist()) <= {2, 7}
    assert set((s._picked // 10).tolist()) == {0, 1, 2}
    s.cancel()
    with pytest.raises(InvalidArgumentError, match="Focus niches go up to 12 but the search has 10 classes"):
        MAPElites(lenet, ENC, batch_size=8, seed=0, islands=2, parents=fb.search.Focus([12]))


def test_a_generation_zero_smaller_than_the_islands_is_refused(lenet: fb.models.TorchClassifier) -> None:
    """An island that gets no genome in generation 0 would never be occupied, so never draw a parent."""
    with pytest.raises(InvalidArgumentError, match=r"islands \(3\) must be at most batch_size \(2\)"):
        islands(lenet, 3, batch_size=2)
    s = islands(lenet, 3)
    with pytest.raises(InvalidArgumentError, match="n must be at least islands"):
        s.ask(2)
    s.ask(3)  # enough: one genome per island
    s.cancel()


def test_initial_genomes_compete_in_every_island(lenet: fb.models.TorchClassifier) -> None:
    """A warm start (another search's elites) seeds every island, not one island per genome."""
    warm = MAPElites(lenet, ENC, classes=CLASSES, batch_size=16, seed=1).run(generations=3, progress=False)
    s = MAPElites(lenet, ENC, classes=CLASSES, batch_size=16, seed=0, islands=2, initial=warm_genomes(lenet))
    s.step()
    fit = s.archive.fitness.view(2, 3)
    assert torch.equal(fit[0], fit[1]) and bool(s.archive.occupied.all())
    assert torch.allclose(s.result().confidence, warm.confidence, rtol=1e-5)


def warm_genomes(clf: fb.models.TorchClassifier) -> torch.Tensor:
    warm = MAPElites(clf, ENC, classes=CLASSES, batch_size=16, seed=1)
    warm.run(generations=3, progress=False)
    return warm.best_genomes()


def test_verify_rescores_the_children_that_beat_their_own_island() -> None:
    fast = fb.models.lenet_mnist().replace(precision="bf16")
    s = MAPElites(fast, ENC, classes=CLASSES, batch_size=16, seed=0, islands=2, verify=True)
    s.run(generations=5, progress=False)
    exact = fb.search.LocalEvaluator(fast.reference(), ENC)(s.archive.genomes, columns=torch.tensor(CLASSES))
    # every niche of every island holds the float32 score of its elite (niche i: class i % 3), not a bf16 one
    torch.testing.assert_close(s.archive.fitness, exact[torch.arange(6), torch.arange(6) % 3], atol=1e-5, rtol=0)
    assert 16 <= s.verifications < s.evaluations


def test_a_fast_model_reports_the_island_best_in_float32() -> None:
    """With a bf16 model the island holding a class's best is chosen again by the float32 reference."""
    fast = fb.models.lenet_mnist().replace(precision="bf16")
    s = MAPElites(fast, ENC, classes=CLASSES, batch_size=16, seed=0, islands=2)
    s.run(generations=3, progress=False)
    exact = fb.search.LocalEvaluator(fast.reference(), ENC)(s.archive.genomes, columns=torch.tensor(CLASSES))
    exact = exact[torch.arange(6), torch.arange(6) % 3].view(2, 3)
    assert bool((exact[0] != exact[1]).all())
    # make the fast scores prefer, for every class, the island whose elite is worse in float32
    worse = exact.argmin(dim=0)
    fitness = torch.full((2, 3), -10.0)
    fitness[worse, torch.arange(3)] = 0.0
    s.archive.fitness.copy_(fitness.flatten())
    s.archive.found_at.copy_(torch.arange(6) * 16 + 16)  # a distinct count per niche
    res = s.result()
    better = 1 - worse
    torch.testing.assert_close(res.confidence, exact.max(dim=0).values.double().exp())
    niches = better * 3 + torch.arange(3)
    assert torch.equal(res.images, s.images(s.archive.genomes[niches]))
    assert torch.equal(res.found_at, s.archive.found_at[niches])
    # an empty niche holds a placeholder genome: its float32 score never makes it the class's elite
    empty = int(niches[0])
    s.archive.occupied[empty] = False
    s.archive.fitness[empty] = -math.inf
    again = s.result()
    assert again.confidence[0] == exact[worse[0], 0].double().exp()
    assert torch.equal(again.images[0], s.images(s.archive.genomes[int(worse[0]) * 3 : int(worse[0]) * 3 + 1])[0])


def test_polish_leaves_a_class_met_in_another_island(lenet: fb.models.TorchClassifier) -> None:
    polish = fb.search.GradientPolish(every=1, steps=2, below=0.5, above=0.0)
    s = islands(lenet, 2, batch_size=4, polish=polish)
    told(s, [[0.9, 0.1, 0.1], [0.3, 0.2, 0.1], [0.1, 0.1, 0.1], [0.1, 0.1, 0.1]])
    # class 1 is met (0.9 >= 0.5) in island 0; island 1's 0.3 is below 0.5 but must not be polished
    s.ask()
    assert s._polish_pending is not None
    polished = set(s._polish_pending[0].tolist())
    assert 3 not in polished and 0 not in polished
    assert polished <= {1, 2, 4, 5}
    s.cancel()


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_island_counts_name_the_argument(lenet: fb.models.TorchClassifier, bad: Any) -> None:
    with pytest.raises((InvalidArgumentError, fb.errors.InvalidTypeError), match="islands"):
        islands(lenet, bad)


def test_islands_with_near_refine_and_polish(lenet: fb.models.TorchClassifier) -> None:
    """The other options keep to a child's island: refined children, polished elites, their bookkeeping."""
    enc = CPPNEncoding((1, 28, 28))
    near = fb.search.NearStrength(2.0, near_confidence=0.05, refine=0.02)
    polish = fb.search.GradientPolish(every=2, steps=2, below=0.999, above=0.0, most=2)
    s = MAPElites(lenet, enc, classes=CLASSES, batch_size=8, seed=0, islands=2, mutation_schedule=near, polish=polish)
    res = s.run(generations=5, progress=False)
    assert res.evaluations == 40 and s.gradient_images > 0
    fit = s.archive.fitness.view(2, 3)
    assert torch.equal(res.confidence.float().log(), fit.max(dim=0).values)
    assert s._polish_seen.shape == (6,)
    assert bool((s._polish_seen >= 0).any())
    again = MAPElites(
        lenet, enc, classes=CLASSES, batch_size=8, seed=0, islands=2, mutation_schedule=near, polish=polish
    )
    assert torch.equal(again.run(generations=5, progress=False).images, res.images)


ISLAND_STEP_CASES = {
    "unmet-first": {"parents": "unmet-first"},
    "curiosity": {"parents": "curiosity"},
    "focus": {"parents": fb.search.Focus([3, 8])},
    "crossover": {"parents": "unmet-first", "crossover": 0.5},
    "near-strength": {"mutation_schedule": fb.search.NearStrength(2.0, near_confidence=0.5)},
    "near-refine-cppn": {"mutation_schedule": fb.search.NearStrength(2.0, near_confidence=0.2, refine=0.02)},
}


@pytest.mark.parametrize("case", list(ISLAND_STEP_CASES))
def test_island_generations_read_nothing_back(
    lenet: fb.models.TorchClassifier, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """Island masks, class bests and the class count stay on the device (no host read per generation)."""
    enc: fb.encodings.Encoding = (
        CPPNEncoding((1, 28, 28)) if case.endswith("cppn") else DirectEncoding((1, 28, 28), mutation_rate=0.05)
    )
    ev = fb.search.LocalEvaluator(lenet, enc, checked=False)
    s = MAPElites(lenet, enc, batch_size=32, seed=0, evaluator=ev, islands=3, **ISLAND_STEP_CASES[case])
    _trapped_generations(s, ev, 3, monkeypatch)
    assert s.generation == 4
    assert math.isfinite(float(s.result().confidence.min()))
