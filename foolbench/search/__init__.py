"""Searches for fooling images and adversarial perturbations.

- Black-box evolution: :class:`MAPElites`, :class:`SingleClassEvolution` (ask/tell, ``run(...)``).
- White-box fooling images: :class:`GradientAscent` (also visualises internal units).
- Perturbation attacks, called as ``attack(classifier, images, labels, target=None)``:
  :class:`FGSM`, :class:`PGD`, :class:`DeepFool`, :class:`SquareAttack` (score-based, gradient-free),
  :class:`CarliniWagnerL2`; over a ``DataLoader`` with ``attack.run_batches(classifier, loader)``.
- Universal perturbations: :class:`UniversalPerturbation`, :func:`fooling_rate`, :func:`transfer_matrix`.
"""

from __future__ import annotations

from foolbench.search._archive import AddStatus, ClassArchive
from foolbench.search._ascent import GradientAscent, UnitVisualization
from foolbench.search._attacks import FGSM, PGD, Attack, AttackResult, DeepFool, lp_norm, project
from foolbench.search._cw import CarliniWagnerL2
from foolbench.search._evolution import MAPElites, SingleClassEvolution
from foolbench.search._result import FoolingResult, History
from foolbench.search._square import SquareAttack
from foolbench.search._uap import UAPResult, UniversalPerturbation, fooling_rate, transfer_matrix

__all__ = [
    "FGSM",
    "PGD",
    "AddStatus",
    "Attack",
    "AttackResult",
    "CarliniWagnerL2",
    "ClassArchive",
    "DeepFool",
    "FoolingResult",
    "GradientAscent",
    "History",
    "MAPElites",
    "SingleClassEvolution",
    "SquareAttack",
    "UAPResult",
    "UnitVisualization",
    "UniversalPerturbation",
    "fooling_rate",
    "lp_norm",
    "project",
    "transfer_matrix",
]
