"""Genome encodings: how a searched genome becomes an image.

:class:`DirectEncoding` evolves the pixels themselves, :class:`CPPNEncoding` networks that
paint them; :func:`from_name` builds either by name. Every encoding follows
the :class:`Encoding` protocol, so :class:`foolbench.search.MAPElites` runs any of them.
"""

from __future__ import annotations

from foolbench.encodings._base import Differentiable, Encoding, Genomes, TensorBatch, is_clean, mark_clean
from foolbench.encodings._cppn import ACTIVATIONS, CPPNEncoding, CPPNGenomes
from foolbench.encodings._direct import DirectEncoding, polynomial_mutation
from foolbench.encodings._factory import ENCODINGS, from_name

__all__ = [
    "ACTIVATIONS",
    "ENCODINGS",
    "CPPNEncoding",
    "CPPNGenomes",
    "Differentiable",
    "DirectEncoding",
    "Encoding",
    "Genomes",
    "TensorBatch",
    "from_name",
    "is_clean",
    "mark_clean",
    "polynomial_mutation",
]
