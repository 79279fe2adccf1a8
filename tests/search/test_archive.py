from __future__ import annotations

import torch

from foolbench.encodings import DirectEncoding
from foolbench.search import AddStatus, ClassArchive


def test_every_child_competes_for_every_niche() -> None:
    arc = ClassArchive(torch.tensor([0, 2]), DirectEncoding((1, 2, 2)))
    g = torch.arange(4 * 4, dtype=torch.float32).view(4, 1, 2, 2) / 16
    lp = torch.log_softmax(torch.tensor([[5.0, 0, 0], [0, 0, 1], [0, 0, 6], [1, 0, 0]]), 1)
    status = arc.add(g, lp, evaluations=4)
    assert status.tolist() == [AddStatus.NEW, AddStatus.NEW]
    assert torch.equal(arc.genomes[0], g[0]) and torch.equal(arc.genomes[1], g[2])
    assert arc.found_at.tolist() == [4, 4]
    # a worse batch changes nothing; a better child for niche 1 only improves niche 1
    lp2 = torch.log_softmax(torch.tensor([[1.0, 0, 0], [0, 0, 9]]), 1)
    g2 = torch.zeros(2, 1, 2, 2)
    status = arc.add(g2, lp2, evaluations=6)
    assert status.tolist() == [AddStatus.NOT_ADDED, AddStatus.IMPROVED]
    assert torch.equal(arc.genomes[0], g[0]) and torch.equal(arc.genomes[1], g2[1])
    assert arc.found_at.tolist() == [4, 6]
    assert bool((arc.confidence() > 0.98).all())


def test_state_roundtrip() -> None:
    enc = DirectEncoding((1, 2, 2))
    arc = ClassArchive(torch.tensor([0, 1]), enc)
    arc.add(torch.rand(3, 1, 2, 2), torch.log_softmax(torch.randn(3, 2), 1), evaluations=3)
    other = ClassArchive(torch.tensor([0, 1]), enc)
    other.load_state_dict(arc.state_dict())
    assert torch.equal(other.fitness, arc.fitness) and torch.equal(other.genomes, arc.genomes)
