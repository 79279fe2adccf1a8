"""GradientPolish: differentiable renders, the polish step, and its place in MAPElites."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import foolbench as fb
from foolbench.encodings import ACTIVATIONS, CPPNEncoding, DirectEncoding
from foolbench.errors import CheckpointError, InvalidArgumentError, InvalidTypeError
from foolbench.search import GradientPolish, MAPElites
from tests._genomes import evolved


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 17, 23), (3, 96, 96)])  # 96x96: render sums each node on a CPU
def test_render_genes_is_render(shape: tuple[int, int, int]) -> None:
    enc = CPPNEncoding(shape, activations=tuple(ACTIVATIONS))
    g = evolved(enc, n=12, rounds=30)
    assert len(set(g.activation[g.active].tolist())) == len(ACTIVATIONS)  # every function takes part
    same = enc.render_genes(g, enc.genes(g))
    assert (same - enc.render(g)).abs().max() <= 1e-5
    # other weights: the render of genomes that carry them
    genes = enc.genes(g) + 0.3 * torch.randn(g.weight.shape, generator=torch.Generator().manual_seed(2))
    moved = enc.with_genes(g, genes)
    assert (enc.render_genes(g, genes) - enc.render(moved)).abs().max() <= 1e-5


def test_gradients_reach_connections_only() -> None:
    enc = CPPNEncoding((3, 12, 12))
    g = evolved(enc, n=4, rounds=30)
    genes = enc.genes(g).requires_grad_(True)
    enc.render_genes(g, genes).square().sum().backward()
    assert genes.grad is not None
    assert torch.equal(genes.grad[~g.edge], torch.zeros_like(genes.grad[~g.edge]))
    assert (genes.grad[g.edge] != 0).float().mean() > 0.5


def test_with_genes_clips_keeps_structure_and_leaves_input() -> None:
    enc = CPPNEncoding((1, 8, 8))
    g = evolved(enc, n=3, rounds=30)
    before = g.clone()
    out = enc.with_genes(g, torch.full(g.weight.shape, 50.0))
    assert torch.equal(out.edge, g.edge) and torch.equal(out.activation, g.activation)
    assert torch.equal(out.weight[g.edge], torch.full_like(out.weight[g.edge], 10.0))
    assert torch.equal(out.weight[~g.edge], torch.zeros_like(out.weight[~g.edge]))  # no connection appears
    assert all(torch.equal(a, b) for a, b in zip(g.as_dict().values(), before.as_dict().values(), strict=True))


def test_genes_bad_input() -> None:
    enc = CPPNEncoding((1, 8, 8))
    g = evolved(enc, n=2, rounds=30)
    with pytest.raises(InvalidArgumentError, match="genes must have the genomes' weight shape"):
        enc.render_genes(g, torch.zeros(3, 4))
    with pytest.raises(InvalidTypeError, match="genes must be a float tensor"):
        enc.with_genes(g, torch.zeros(g.weight.shape, dtype=torch.long))
    with pytest.raises(InvalidArgumentError, match="genes must be finite"):
        enc.with_genes(g, torch.full(g.weight.shape, float("nan")))
    direct = DirectEncoding((1, 4, 4))
    pixels = torch.rand(2, 1, 4, 4)
    with pytest.raises(InvalidArgumentError, match="genes must have the genomes' shape"):
        direct.render_genes(pixels, torch.rand(2, 1, 4, 5))
    with pytest.raises(InvalidArgumentError, match="genes must be finite"):
        direct.with_genes(pixels, torch.full_like(pixels, float("nan")))
    assert torch.equal(direct.with_genes(pixels, pixels + 2.0), torch.ones_like(pixels))


@pytest.mark.parametrize("kind", ["cppn", "direct"])
def test_polish_raises_the_target_class(lenet: fb.models.TorchClassifier, kind: str) -> None:
    enc: CPPNEncoding | DirectEncoding
    if kind == "cppn":
        enc = CPPNEncoding((1, 28, 28))
        g = evolved(enc, n=10, rounds=30)
    else:
        enc = DirectEncoding((1, 28, 28))
        g = enc.sample(10, torch.Generator().manual_seed(0))
    classes = torch.arange(10)
    start = lenet.log_probs(enc.render(g))[classes, classes]
    trace: list[torch.Tensor] = []
    polished, best = GradientPolish(steps=20, lr=0.05 if kind == "cppn" else 0.02)(lenet, enc, g, classes, trace=trace)
    assert len(trace) == 21 and torch.allclose(trace[0], start, atol=1e-4)  # each step's scores, from the start
    assert torch.equal(torch.stack(trace).max(dim=0).values, best)  # the best kept is the best step's
    exact = lenet.log_probs(enc.render(polished))[classes, classes]
    assert torch.allclose(exact, best, atol=1e-4)  # the genes kept are the ones that scored best
    assert (best >= start - 1e-6).all()  # never worse than where it started
    # clearly better for most (a CPPN whose output nodes saturate inside, e.g. a Gaussian far from 0, has no gradient)
    # (LeNet already calls uniform noise an 8 at 99.8%: that one has nothing to gain)
    assert ((best > start + 0.1) | (start > -0.01)).sum() >= (6 if kind == "cppn" else 10)
    if kind == "cppn":
        assert torch.equal(polished.edge, g.edge) and torch.equal(polished.activation, g.activation)


def test_one_polish_step_is_kept_when_it_helps(lenet: fb.models.TorchClassifier) -> None:
    """The genes after the last Adam step were never scored, so steps=1 returned its input unchanged (and
    every polish lost its last step)."""
    enc = DirectEncoding((1, 28, 28))
    g = enc.sample(10, torch.Generator().manual_seed(0))
    classes = torch.arange(10)
    start = lenet.log_probs(enc.render(g))[classes, classes]
    polished, best = GradientPolish(steps=1, lr=0.02)(lenet, enc, g, classes)
    assert bool((best > start + 1e-3).all()) and not torch.equal(polished, g)


def test_polish_bad_settings() -> None:
    for kw, name in [
        ({"every": 0}, "every"),
        ({"steps": 0}, "steps"),
        ({"lr": 0.0}, "lr"),
        ({"below": 0.0}, "below"),
        ({"below": 1.5}, "below"),
        ({"most": 0}, "most"),
        ({"from_evaluations": -1}, "from_evaluations"),
        ({"from_seconds": -0.5}, "from_seconds"),
        ({"from_seconds": float("nan")}, "from_seconds"),
    ]:
        with pytest.raises(InvalidArgumentError, match=name):
            GradientPolish(**kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="classes must have shape"):
        enc = CPPNEncoding((1, 8, 8))
        GradientPolish()(fb.models.lenet_mnist(), enc, evolved(enc, n=2, rounds=30), torch.tensor([1]))


def test_search_refuses_bad_polish(lenet: fb.models.TorchClassifier) -> None:
    enc = CPPNEncoding((1, 28, 28))
    with pytest.raises(InvalidTypeError, match="polish must be a GradientPolish"):
        MAPElites(lenet, enc, polish="yes")  # type: ignore[arg-type]

    class Opaque:  # an encoding without genes
        image_shape = (1, 28, 28)

        def __getattr__(self, name: str) -> object:
            return getattr(enc, name) if name not in ("genes", "render_genes", "with_genes", "gene_bounds") else None

    with pytest.raises(InvalidArgumentError, match="polish needs an encoding with gene_bounds"):
        MAPElites(lenet, Opaque(), polish=GradientPolish())  # type: ignore[arg-type]


def polished_search(clf: fb.models.TorchClassifier, seed: int = 0, **kw: object) -> MAPElites:
    polish = GradientPolish(every=3, steps=4, lr=0.05, below=0.9999, above=0.0, **kw)  # type: ignore[arg-type]
    return MAPElites(clf, CPPNEncoding((1, 28, 28)), batch_size=16, seed=seed, polish=polish)


def test_search_puts_the_nearest_polished_elites_first(lenet: fb.models.TorchClassifier) -> None:
    s = polished_search(lenet, most=4)
    s.run(generations=3, progress=False)
    assert s.gradient_images == 0
    below = s.archive.occupied & (s.archive.fitness < s.polish.below_log_prob)  # type: ignore[union-attr]
    assert int(below.sum()) >= 4
    nearest = torch.where(below, s.archive.fitness, torch.tensor(-torch.inf)).argsort(descending=True)[:4]
    elites = s.archive.genomes[nearest]  # type: ignore[index]
    batch = s.ask()
    assert torch.equal(batch.edge[:4], elites.edge)  # structure kept, in nearest-first order
    assert not torch.equal(batch.weight[:4], elites.weight)  # weights moved
    before = s.archive.fitness[nearest].clone()
    scores = lenet.log_probs(s.images(batch))
    own = scores[torch.arange(4), s.archive.classes[nearest]]
    assert (own >= before - 1e-5).all() and (own > before + 1e-3).sum() >= 2  # each as good, most better
    s.tell(scores)
    assert s.gradient_images == 4 * 4
    assert (s.archive.fitness[nearest] > before + 1e-3).sum() >= 2
    s.step()  # generation 4: no polish
    assert s.gradient_images == 16


def test_polished_search_is_seeded_and_resumes_bit_for_bit(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    first = polished_search(lenet)
    a = first.run(generations=7, progress=False)
    assert first.gradient_images > 0
    b = polished_search(lenet).run(generations=7, progress=False)
    assert torch.equal(a.images, b.images)
    ckpt = tmp_path / "run.pt"
    polished_search(lenet).run(generations=4, progress=False, checkpoint=ckpt, checkpoint_every=2)
    resumed = polished_search(lenet)
    out = resumed.run(generations=7, progress=False, checkpoint=ckpt)
    assert torch.equal(out.images, a.images) and resumed.gradient_images == first.gradient_images
    with pytest.raises(CheckpointError, match="another configuration"):
        MAPElites(lenet, CPPNEncoding((1, 28, 28)), batch_size=16, seed=0).run(
            generations=9, progress=False, checkpoint=ckpt
        )


def test_endgame_polishes_every_generation_from_its_start() -> None:
    polish = GradientPolish(every=10, from_evaluations=64)
    assert [g for g in range(25) if polish.due(g, evaluations=16 * g, seconds=0.0)] == list(range(4, 25))
    timed = GradientPolish(every=10, from_seconds=3.0)
    assert [g for g in range(1, 12) if timed.due(g, evaluations=0, seconds=g * 0.5)] == [6, 7, 8, 9, 10, 11]
    plain = GradientPolish(every=10)
    assert [g for g in range(25) if plain.due(g, evaluations=10**9, seconds=1e9)] == [10, 20]
    assert not polish.due(0, evaluations=10**9, seconds=1e9)  # the random generation never polishes
    # unset endgames stay out of the configuration; a polish that scores its last step is another search
    # than one that did not (its checkpoints are refused)
    assert set(plain.config()) == {"scores_last_step", "every", "steps", "lr", "below", "above", "most"}
    assert polish.config()["from_evaluations"] == 64 and timed.config()["from_seconds"] == 3.0
    assert "from_seconds=3" in repr(timed)


def test_endgame_in_a_search_counts_and_resumes(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    search = polished_search(lenet, from_evaluations=5 * 16)  # polish at generation 3, then from 5 on
    counts = []
    for _ in range(7):
        search.step()
        counts.append(search.gradient_images)
    grew = [g for g in range(1, 7) if counts[g] > counts[g - 1]]
    assert grew == [3, 5, 6]
    ckpt = tmp_path / "run.pt"
    polished_search(lenet, from_evaluations=5 * 16).run(generations=4, progress=False, checkpoint=ckpt)
    with pytest.raises(CheckpointError, match="another configuration"):  # the endgame is part of the search
        polished_search(lenet).run(generations=7, progress=False, checkpoint=ckpt)
    resumed = polished_search(lenet, from_evaluations=5 * 16)
    out = resumed.run(generations=7, progress=False, checkpoint=ckpt)
    assert torch.equal(out.images, search.result().images) and resumed.gradient_images == counts[-1]


def test_an_elite_the_polish_could_not_improve_waits_for_a_new_one(lenet: fb.models.TorchClassifier) -> None:
    """The polish is deterministic: the same elite would give the same genes, so it is skipped until replaced."""
    s = polished_search(lenet, from_evaluations=3 * 16)  # every generation from 3 on
    s.run(generations=3, progress=False)
    for _ in range(6):
        fitness, found_at = s.archive.fitness.clone(), s.archive.found_at.clone()
        eligible = s.archive.occupied & (fitness < s.polish.below_log_prob) & (found_at != s._polish_seen)  # type: ignore[union-attr]
        before = s.gradient_images
        s.step()
        assert s.gradient_images - before == int(eligible.sum()) * 4  # 4 steps each, and only those
        # every niche polished is now marked with the elite it had; a replaced one shows a new found_at
        assert torch.equal(s._polish_seen[eligible], found_at[eligible])
    assert (s._polish_seen >= 0).any()


def test_a_timed_endgame_starts_once_the_search_has_run_that_long(lenet: fb.models.TorchClassifier) -> None:
    s = polished_search(lenet, from_seconds=3600.0)  # every 3 generations, and every one after an hour
    s.run(generations=4, progress=False)
    before = s.gradient_images
    s.step()  # generation 4: neither a multiple of 3 nor an hour in
    assert s.gradient_images == before
    s.seconds = 3600.0  # as a resumed run that computed for an hour would have it
    s.step()  # generation 5: the endgame
    assert s.gradient_images > before


@pytest.mark.parametrize("level", [0.5, 0.99, 0.9999])
def test_polish_and_near_levels_decide_as_results_do(level: float) -> None:
    # float32(log c) rounds below log c for these levels: an elite scored exactly that is below c in float64
    # (unmet for the parents, not fooled in a result) and must count as below for the polish and NearStrength
    edge = torch.tensor([math.log(level)], dtype=torch.float32)  # fitness is float32, as in the archive
    assert math.exp(float(edge)) < level
    polish = fb.search.GradientPolish(below=level, above=level / 2)
    assert bool(edge < polish.below_log_prob)  # polished, as the unmet-first parents would breed it
    above = fb.search.GradientPolish(below=0.99999, above=level)
    assert not bool(edge >= above.above_log_prob)  # below the polish's floor
    assert not bool(edge >= fb.search.NearStrength(2.0, near_confidence=level).near_log_prob)  # not yet near
