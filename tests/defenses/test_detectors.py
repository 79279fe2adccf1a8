from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench._filters import median_filter, reduce_bit_depth
from foolbench.defenses import FeatureSqueezingDetector, Squeezer, bit_depth, median
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


def test_feature_squeezing_scores_in_chunks_of_the_batch_size(
    lenet: fb.models.TorchClassifier, digits_test: Digits
) -> None:
    """score() squeezed the whole batch at once: a median squeezer materialised B*C*H*W*size**2 floats
    (about 11 GB for 2000 ImageNet images) whatever the classifier's batch_size."""
    x = digits_test[0][:50]
    seen: list[int] = []

    def spy(images: torch.Tensor) -> torch.Tensor:
        seen.append(images.shape[0])
        return median_filter(images, 3)

    squeezers = [bit_depth(1), Squeezer("median 3x3 (spy)", spy, straight_through=True)]
    small = lenet.replace(batch_size=16)
    chunked = FeatureSqueezingDetector(small, squeezers).score(x)
    assert seen == [16, 16, 16, 2]  # the squeezer never sees more than batch_size rows
    # the scores are those of squeezing everything at once
    p = small.probs(x)
    at_once = torch.maximum(
        (p - small.probs(reduce_bit_depth(x, 1))).abs().sum(1), (p - small.probs(median_filter(x, 3))).abs().sum(1)
    )
    assert torch.equal(chunked, at_once)
    seen.clear()
    whole = FeatureSqueezingDetector(lenet.replace(batch_size=1000), squeezers).score(x)
    assert seen == [50]
    torch.testing.assert_close(chunked, whole)


def test_calibrate_names_its_own_argument(lenet: fb.models.TorchClassifier) -> None:
    """calibrate() reported bad clean_images as "images must ...", an argument it does not have."""
    det = FeatureSqueezingDetector(lenet, [bit_depth(1), median(3)])
    with pytest.raises(InvalidArgumentError, match=r"^clean_images must hold at least one image"):
        det.calibrate(torch.empty(0, 1, 28, 28))
    with pytest.raises(InvalidArgumentError, match=r"^clean_images must have shape \(B, 1, 28, 28\)"):
        det.calibrate(torch.rand(3, 1, 27, 28))
    with pytest.raises(InvalidArgumentError, match=r"^images must have shape"):
        det.score(torch.rand(3, 1, 27, 28))
    assert det.threshold is None  # a refused calibration leaves the detector as it was
