"""Genomes for tests: CPPNs grown by mutation, with the structure a search's elites have."""

from __future__ import annotations

import torch

from foolbench.encodings import CPPNEncoding, CPPNGenomes


def evolved(enc: CPPNEncoding, n: int = 16, rounds: int = 40, seed: int = 0) -> CPPNGenomes:
    """``n`` random genomes mutated ``rounds`` times (nodes, connections and weights added and moved)."""
    g = enc.sample(n, torch.Generator().manual_seed(seed))
    rng = torch.Generator().manual_seed(seed + 1)
    for _ in range(rounds):
        g = enc.mutate(g, rng)
    return g
