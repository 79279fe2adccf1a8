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


def test_rate_decay_schedule() -> None:
    enc = DirectEncoding((1, 4, 4), mutation_rate=0.1, decay_every=1000, decay_factor=0.5, min_rate=0.02)
    assert enc.rate(0) == 0.1 and enc.rate(999) == 0.1
    assert enc.rate(1000) == 0.05 and enc.rate(5000) == 0.02


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
        ({"decay_every": 0}, InvalidArgumentError, "decay_every must be an int >= 1"),
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
