"""Defenses: each one is a classifier that wraps a classifier, so every search and attack runs on it unchanged.

- :class:`Ensemble` of members that may differ in architecture;
- input transformations :class:`GaussianSmoothing`, :class:`MedianSmoothing`, :class:`BitDepthReduction`
  (non-differentiable ones pass gradients straight through, BPDA, so gradient attacks stay adaptive);
- :class:`FeatureSqueezingDetector` (Xu et al. 2018), calibrated to a false-positive rate;
- :class:`FoolingClassRetraining` (Nguyen et al. 2015: an extra "fooling" class, round after round);
- :class:`AdversarialFineTuning` (Moosavi-Dezfooli et al. 2017: fine-tuning on universally perturbed inputs).
"""

from __future__ import annotations

from foolbench.defenses._squeezing import FeatureSqueezingDetector
from foolbench.defenses._training import AdversarialFineTuning, FoolingClassRetraining, RoundTable, accuracy
from foolbench.defenses._wrappers import (
    BitDepthReduction,
    Ensemble,
    GaussianSmoothing,
    InputTransformation,
    MedianSmoothing,
    Squeezer,
    bit_depth,
    gaussian,
    median,
)

__all__ = [
    "AdversarialFineTuning",
    "BitDepthReduction",
    "Ensemble",
    "FeatureSqueezingDetector",
    "FoolingClassRetraining",
    "GaussianSmoothing",
    "InputTransformation",
    "MedianSmoothing",
    "RoundTable",
    "Squeezer",
    "accuracy",
    "bit_depth",
    "gaussian",
    "median",
]
