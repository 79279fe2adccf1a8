"""Searches for fooling images and adversarial perturbations.

- Black-box evolution: :class:`MAPElites`, :class:`SingleClassEvolution` (ask/tell, ``run(...)``) and
  the random-sampling baseline :class:`RandomSearch`, built from an :class:`Evaluator`
  (:class:`LocalEvaluator` by default), a :class:`ParentSelector`, a :class:`MutationSchedule` and
  :class:`Callback` objects (budgets, progress, checkpoints, loggers).
- White-box fooling images: :class:`GradientAscent` (also visualises internal units);
  :class:`GradientPolish` lets a MAP-Elites search move its elites' genes by gradient steps.
- Perturbation attacks, called as ``attack(classifier, images, labels, *, target=None)``:
  :class:`FGSM`, :class:`PGD`, :class:`DeepFool`, :class:`SquareAttack` (score-based, gradient-free),
  :class:`CarliniWagnerL2`; over a ``DataLoader`` with ``attack.run_batches(classifier, loader)``.
- Universal perturbations: :class:`UniversalPerturbation`, :func:`fooling_rate`, :func:`transfer_matrix`.
"""

from __future__ import annotations

from foolbench.search._archive import AddStatus, ClassArchive
from foolbench.search._ascent import GradientAscent, UnitVisualization
from foolbench.search._attacks import FGSM, PGD, Attack, AttackResult, DeepFool, lp_norm, project
from foolbench.search._callbacks import (
    Budget,
    Callback,
    Checkpointer,
    CSVLogger,
    JSONLLogger,
    ProgressBar,
    StopAtTarget,
    TensorBoardLogger,
)
from foolbench.search._cw import CarliniWagnerL2
from foolbench.search._evaluator import Evaluator, LocalEvaluator
from foolbench.search._evolution import Evolution, MAPElites, RandomSearch, SingleClassEvolution
from foolbench.search._operators import (
    ConstantStrength,
    Curiosity,
    CycleStrength,
    Focus,
    MutationSchedule,
    NearStrength,
    ParentSelector,
    RampStrength,
    StepDecay,
    Uniform,
    UnmetFirst,
    Weakest,
    weighted_draw,
)
from foolbench.search._polish import GradientPolish
from foolbench.search._recipes import MNIST_RECIPE, EvolutionRecipe, run_ascent, run_evolution, run_uap
from foolbench.search._result import FoolingResult, History
from foolbench.search._runs import MapExecutor, SerialMap
from foolbench.search._square import SquareAttack
from foolbench.search._uap import UAPResult, UniversalPerturbation, fooling_rate, transfer_matrix

__all__ = [
    "FGSM",
    "MNIST_RECIPE",
    "PGD",
    "AddStatus",
    "Attack",
    "AttackResult",
    "Budget",
    "CSVLogger",
    "Callback",
    "CarliniWagnerL2",
    "Checkpointer",
    "ClassArchive",
    "ConstantStrength",
    "Curiosity",
    "CycleStrength",
    "DeepFool",
    "Evaluator",
    "Evolution",
    "EvolutionRecipe",
    "Focus",
    "FoolingResult",
    "GradientAscent",
    "GradientPolish",
    "History",
    "JSONLLogger",
    "LocalEvaluator",
    "MAPElites",
    "MapExecutor",
    "MutationSchedule",
    "NearStrength",
    "ParentSelector",
    "ProgressBar",
    "RampStrength",
    "RandomSearch",
    "SerialMap",
    "SingleClassEvolution",
    "SquareAttack",
    "StepDecay",
    "StopAtTarget",
    "TensorBoardLogger",
    "UAPResult",
    "Uniform",
    "UnitVisualization",
    "UniversalPerturbation",
    "UnmetFirst",
    "Weakest",
    "fooling_rate",
    "lp_norm",
    "project",
    "run_ascent",
    "run_evolution",
    "run_uap",
    "transfer_matrix",
    "weighted_draw",
]
