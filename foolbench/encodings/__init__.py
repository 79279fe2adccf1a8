"""Genome encodings: how a searched genome becomes an image.

:class:`DirectEncoding` evolves the pixels themselves; every encoding follows
the :class:`Encoding` protocol, so :class:`foolbench.search.MAPElites` runs any of them.
"""

from __future__ import annotations

from foolbench.encodings._base import Encoding, Genomes, TensorBatch
from foolbench.encodings._cppn import ACTIVATIONS, CPPNEncoding, CPPNGenomes
from foolbench.encodings._direct import DirectEncoding, polynomial_mutation

__all__ = [
    "ACTIVATIONS",
    "CPPNEncoding",
    "CPPNGenomes",
    "DirectEncoding",
    "Encoding",
    "Genomes",
    "TensorBatch",
    "polynomial_mutation",
]
