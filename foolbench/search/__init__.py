"""Searches for fooling images and adversarial perturbations.

Black-box evolution (:class:`MAPElites`, :class:`SingleClassEvolution`) follows
an ask/tell protocol with a ``run(...)`` convenience that returns a frozen
:class:`FoolingResult`.
"""

from __future__ import annotations

from foolbench.search._archive import AddStatus, ClassArchive
from foolbench.search._evolution import MAPElites, SingleClassEvolution
from foolbench.search._result import FoolingResult, History

__all__ = ["AddStatus", "ClassArchive", "FoolingResult", "History", "MAPElites", "SingleClassEvolution"]
