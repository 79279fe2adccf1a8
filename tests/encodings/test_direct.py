from __future__ import annotations

import pytest
import torch

from foolbench.encodings import DirectEncoding, Encoding, polynomial_mutation
from foolbench.errors import CheckpointError, InvalidArgumentError, InvalidTypeError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_protocol_and_sample() -> None:
    enc = DirectEncoding((3, 8, 8))
    assert isinstance(enc, Encoding)
    g = enc.sample(5, gen())
    assert g.shape == (5, 3, 8, 8) and float(g.min()) >= 0 and float(g.max()) <= 1
    assert torch.equal(g, enc.sample(5, gen()))  # seeded
    assert not torch.equal(g, enc.sample(5, gen(1)))


def test_mutation_rate_and_bounds() -> None:
    enc = DirectEncoding((1, 28, 28), mutation_rate=0.1, eta=15.0)
    g = enc.sample(64, gen())
    before = g.clone()
    child = enc.mutate(g, gen(1))
    assert torch.equal(g, before)  # input untouched
    changed = (child != g).float().mean().item()
    assert 0.07 < changed < 0.11  # ~10% of genes, drawn with replacement
    assert float(child.min()) >= 0 and float(child.max()) <= 1


def test_eta_controls_step_size() -> None:
    x = torch.full((20000,), 0.5)
    u = torch.rand(20000, generator=gen())
    small = (polynomial_mutation(x, u, 50.0) - x).abs().mean()
    large = (polynomial_mutation(x, u, 1.0) - x).abs().mean()
    assert large > 3 * small


def test_polynomial_mutation_stays_in_bounds_at_edges() -> None:
    u = torch.rand(10000, generator=gen())
    for v in (0.0, 1.0, 1e-6, 1 - 1e-6):
        y = polynomial_mutation(torch.full((10000,), v), u, 0.5)
        assert float(y.min()) >= 0 and float(y.max()) <= 1 and bool(torch.isfinite(y).all())


def test_strength_scales_the_share_of_genes_mutated() -> None:
    enc = DirectEncoding((1, 28, 28), mutation_rate=0.1)
    g = enc.sample(64, gen())
    assert torch.equal(enc.mutate(g, gen(1)), enc.mutate(g, gen(1), strength=1.0))  # 1 is the default
    half = (enc.mutate(g, gen(1), strength=0.5) != g).float().mean().item()
    assert 0.035 < half < 0.055  # ~5% of genes
    every = (enc.mutate(g, gen(1), strength=50.0) != g).float().mean().item()
    assert 0.55 < every < 0.7  # rate clamped to 1: as many draws as genes, with replacement (1 - 1/e)
    tiny = enc.mutate(g, gen(1), strength=1e-9)
    assert int((tiny != g).sum()) == 1  # at least one gene


@pytest.mark.parametrize(
    ("strength", "err"),
    [
        (0.0, InvalidArgumentError),
        (-1.0, InvalidArgumentError),
        (float("nan"), InvalidArgumentError),
        (float("inf"), InvalidArgumentError),
        ("2", InvalidTypeError),
    ],
)
def test_bad_strength(strength: object, err: type[Exception]) -> None:
    enc = DirectEncoding((1, 4, 4))
    with pytest.raises(err, match="strength must be"):
        enc.mutate(enc.sample(2, gen()), gen(), strength=strength)  # type: ignore[arg-type]


def test_dtype_follows_input() -> None:
    enc = DirectEncoding((1, 4, 4))
    g = enc.sample(3, gen()).double()
    assert enc.mutate(g, gen()).dtype == torch.float64


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"mutation_rate": 0.0}, InvalidArgumentError, r"mutation_rate must be a finite number in \(0, 1\]"),
        ({"mutation_rate": 1.5}, InvalidArgumentError, "mutation_rate"),
        ({"eta": -1.0}, InvalidArgumentError, "eta"),
        ({"eta": "15"}, InvalidTypeError, "eta must be a real number"),
    ],
)
def test_bad_arguments(kw: dict[str, object], err: type[Exception], match: str) -> None:
    with pytest.raises(err, match=match):
        DirectEncoding((1, 28, 28), **kw)  # type: ignore[arg-type]


def test_bad_genomes_and_state() -> None:
    enc = DirectEncoding((1, 28, 28))
    with pytest.raises(InvalidArgumentError, match=r"genomes must have shape \(B, 1, 28, 28\)"):
        enc.mutate(torch.rand(2, 3, 28, 28), gen())
    with pytest.raises(InvalidTypeError, match="genomes must be a floating tensor"):
        enc.render(torch.zeros(2, 1, 28, 28, dtype=torch.long))
    with pytest.raises(CheckpointError, match="do not fit"):
        enc.genomes_from_state({"pixels": torch.rand(2, 1, 14, 14)})
    with pytest.raises(InvalidArgumentError, match="image_shape"):
        DirectEncoding((28, 28))


def test_crossover_mixes_genes_per_child() -> None:
    enc = DirectEncoding((1, 8, 8))
    a, b = torch.zeros(200, 1, 8, 8), torch.ones(200, 1, 8, 8)
    child = enc.crossover(a, b, torch.Generator().manual_seed(0), probability=0.5)
    share = child.flatten(1).mean(1)
    crossed = share > 0
    assert 60 < int(crossed.sum()) < 140  # about half the children are crossed
    assert 0.35 < float(share[crossed].mean()) < 0.65  # and take about half their genes from the mate
    assert bool(((child == 0) | (child == 1)).all()) and float(a.sum()) == 0.0
    assert enc.crossover(a, b.double(), torch.Generator()).dtype == a.dtype  # the first parents' dtype
    with pytest.raises(InvalidArgumentError, match="mates must have the shape"):
        enc.crossover(a, b[:3], torch.Generator())
    with pytest.raises(InvalidArgumentError, match="probability"):
        enc.crossover(a, b, torch.Generator(), probability=-0.1)


@pytest.mark.parametrize("value", [1.0001, -0.0001, float("inf"), -float("inf")])
def test_mutate_clips_genomes_past_the_bounds_instead_of_turning_them_into_nan(value: float) -> None:
    """With a non-integer eta, polynomial mutation of 1.0001 or -0.0001 is NaN: mutate() returned NaN genes."""
    enc = DirectEncoding((1, 4, 4), eta=2.5, mutation_rate=1.0)
    x = torch.full((2, 1, 4, 4), value)
    child = enc.mutate(x, gen())
    assert bool(torch.isfinite(child).all()) and float(child.min()) >= 0 and float(child.max()) <= 1
    assert torch.equal(child, enc.mutate(x.clamp(0.0, 1.0), gen()))  # as the clipped batch
    assert torch.equal(x, torch.full((2, 1, 4, 4), value))  # the input untouched


@pytest.mark.parametrize("generator", [0, None])
def test_every_random_entry_refuses_what_is_not_a_generator(generator: object) -> None:
    """An int or None failed deep inside with AttributeError: 'int' object has no attribute 'device'."""
    enc = DirectEncoding((1, 4, 4))
    g = enc.sample(2, gen())
    for call in (
        lambda: enc.sample(2, generator),  # type: ignore[arg-type]
        lambda: enc.mutate(g, generator),  # type: ignore[arg-type]
        lambda: enc.crossover(g, g, generator),  # type: ignore[arg-type]
    ):
        with pytest.raises(
            InvalidTypeError, match=f"generator must be a torch.Generator, got {type(generator).__name__}"
        ):
            call()


def test_error_messages_name_the_argument_and_the_values() -> None:
    """crossover blamed genomes for bad mates; validate reported abs().max() (3 for -3); render_genes of
    integer genes said 'float tensor of shape (2, 1, 4, 4), got (2, 1, 4, 4)' as an InvalidArgumentError."""
    enc = DirectEncoding((1, 2, 2))
    a = enc.sample(2, gen())
    with pytest.raises(InvalidArgumentError, match=r"^mates must have shape \(B, 1, 2, 2\), got \(2, 3, 2, 2\)"):
        enc.crossover(a, torch.rand(2, 3, 2, 2), gen())
    with pytest.raises(InvalidTypeError, match="^mates must be a floating tensor"):
        enc.crossover(a, a.long(), gen())
    with pytest.raises(InvalidArgumentError, match=r"got values in \[-3, -3\]"):
        enc.validate(torch.full((1, 1, 2, 2), -3.0))
    with pytest.raises(InvalidArgumentError, match=r"got values in \[-3, 1.5\]"):
        enc.validate(torch.tensor([[[[0.5, -3.0], [1.5, 0.2]]]]))
    with pytest.raises(
        InvalidTypeError, match=r"genes must be a float tensor of shape \(2, 1, 2, 2\), got dtype torch.int64"
    ):
        enc.render_genes(a, a.long())
    with pytest.raises(InvalidTypeError, match="genes must be a float tensor"):
        enc.with_genes(a, a.long())
    with pytest.raises(InvalidArgumentError, match=r"genes must have the genomes' shape \(2, 1, 2, 2\)"):
        enc.render_genes(a, a[:1])


@pytest.mark.parametrize("value", [float("inf"), -float("inf"), float("nan")])
def test_with_genes_refuses_what_is_not_finite(value: float) -> None:
    """with_genes() said it refused NaN or inf but clipped inf to 1 first, and passed it."""
    enc = DirectEncoding((1, 2, 2))
    a = enc.sample(2, gen())
    genes = a.clone()
    genes[1, 0, 1, 1] = value
    with pytest.raises(InvalidArgumentError, match="genes must be finite, got NaN or inf"):
        enc.with_genes(a, genes)
    assert torch.equal(enc.with_genes(a, torch.full_like(a, 2.0)), torch.ones_like(a))  # finite: still clipped
