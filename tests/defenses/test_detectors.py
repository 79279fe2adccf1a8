from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench.defenses import FeatureSqueezingDetector, bit_depth, median
from foolbench.errors import FoolbenchError, InvalidArgumentError, InvalidTypeError
from foolbench.search import PGD

Digits = tuple[torch.Tensor, torch.Tensor]


def test_feature_squeezing_catches_pgd_but_not_fooling_images(
    lenet: fb.models.TorchClassifier, digits_train: Digits, digits_test: Digits
) -> None:
    det = FeatureSqueezingDetector(lenet, [bit_depth(1), median(3)])
    with pytest.raises(FoolbenchError, match=r"threshold is None: the detector is not calibrated.*calibrate"):
        det.detect(digits_test[0][:4])
    det.calibrate(digits_train[0][:1000], false_positive_rate=0.05)
    assert det.threshold is not None and 0 <= det.threshold <= 2
    # the rate holds on held-out clean digits
    assert det.detection_rate(digits_test[0]) <= 0.10
    fooling = fb.search.MAPElites(
        lenet, fb.encodings.DirectEncoding((1, 28, 28), mutation_rate=0.02, eta=1.0), batch_size=64, seed=0
    ).run(max_evaluations=30_000, target_confidence=0.9999, progress=False)
    # PGD examples sit near the decision boundary: squeezing moves them, and they are caught
    adv = PGD(eps=0.3, steps=40)(lenet, digits_test[0][:200], digits_test[1][:200]).adversarial
    assert det.detection_rate(adv) >= 0.8
    # fooling images at 99.99% are far from it: squeezing hardly moves them (a measured finding)
    assert float(det.score(fooling.images).max()) < 0.1
    assert det.detection_rate(fooling.images) <= 0.2
    with pytest.raises(InvalidArgumentError, match="false_positive_rate"):
        det.calibrate(digits_train[0][:100], false_positive_rate=1.0)
    with pytest.raises(InvalidTypeError, match=r"squeezers\[0\]"):
        FeatureSqueezingDetector(lenet, [lambda x: x])  # type: ignore[list-item]
