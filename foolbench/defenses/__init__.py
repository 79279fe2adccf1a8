"""Defenses, by role. Wrappers are classifiers that wrap a classifier, so every search and attack runs on them.

- input transformations (``_transforms``): squeezers :func:`gaussian`, :func:`median`, :func:`bit_depth`
  and the classifiers :class:`InputTransformation`, :class:`GaussianSmoothing`, :class:`MedianSmoothing`,
  :class:`BitDepthReduction` (non-differentiable ones pass gradients straight through, BPDA, so
  gradient attacks stay adaptive);
- ensembles (``_ensemble``): :class:`Ensemble` of members that may differ in architecture;
- detectors (``_detectors``): :class:`FeatureSqueezingDetector` (Xu et al. 2018), calibrated to a
  false-positive rate;
- retraining procedures (``_retraining``): :class:`FoolingClassRetraining` (Nguyen et al. 2015: an
  extra "fooling" class, round after round) and :class:`AdversarialFineTuning` (Moosavi-Dezfooli et
  al. 2017: fine-tuning on universally perturbed inputs), checkpointed and keyed by their
  configuration and the starting model's weights.
"""

from __future__ import annotations

from foolbench.defenses._detectors import FeatureSqueezingDetector
from foolbench.defenses._ensemble import Ensemble
from foolbench.defenses._retraining import AdversarialFineTuning, FoolingClassRetraining, RoundTable, accuracy
from foolbench.defenses._transforms import (
    BitDepthReduction,
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
