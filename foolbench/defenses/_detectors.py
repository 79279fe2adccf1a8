"""Detectors: flag inputs instead of classifying them. Feature squeezing (Xu, Evans & Qi, NDSS 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from foolbench import _checks
from foolbench.defenses._transforms import Squeezer
from foolbench.errors import InvalidArgumentError, InvalidTypeError
from foolbench.models import Classifier, check_classifier

__all__ = ["FeatureSqueezingDetector"]


class FeatureSqueezingDetector:
    """Detect fooling images and adversarial examples by how much squeezing moves the prediction.

    The score of an input is the largest L1 distance, over the squeezers, between the
    classifier's probability vector on the input and on its squeezed copy (in [0, 2]).
    Inputs scoring above :attr:`threshold` are flagged. :meth:`calibrate` sets the
    threshold so that a chosen share of clean inputs is flagged (the false-positive rate).

    Args:
        classifier: the model whose predictions are compared.
        squeezers: one or more :class:`Squeezer` (e.g. ``bit_depth(1)``, ``median(2)`` is not
            allowed (odd sizes only), ``median(3)``).
        threshold: flag scores above this, in [0, 2]; None until :meth:`calibrate`.

    Raises:
        InvalidArgumentError: no squeezers, a threshold outside [0, 2], or a squeezer built
            for other bounds than the classifier's.
        InvalidTypeError: a squeezer that is not a :class:`Squeezer`.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> det = fb.defenses.FeatureSqueezingDetector(clf, [fb.defenses.bit_depth(1), fb.defenses.median(3)])
        >>> clean, _ = fb.models.mnist_digits("train", limit=200)
        >>> t = det.calibrate(clean, false_positive_rate=0.05)
        >>> 0.0 <= t <= 2.0 and abs(det.detection_rate(clean) - 0.05) <= 0.02
        True
    """

    def __init__(
        self, classifier: Classifier, squeezers: Sequence[Squeezer], *, threshold: float | None = None
    ) -> None:
        self.classifier = check_classifier(classifier)
        if isinstance(squeezers, Squeezer):
            squeezers = [squeezers]
        if not isinstance(squeezers, Sequence) or len(squeezers) == 0:
            raise InvalidArgumentError(f"squeezers must be a non-empty sequence of Squeezer, got {squeezers!r}")
        for i, s in enumerate(squeezers):
            if not isinstance(s, Squeezer):
                raise InvalidTypeError(
                    f"squeezers[{i}] must be a foolbench.defenses.Squeezer (gaussian, median, bit_depth), "
                    f"got {type(s).__name__}"
                )
            s.check_bounds(self.classifier, f"squeezers[{i}]")
        self.squeezers = list(squeezers)
        self.threshold = None if threshold is None else self._threshold(threshold)

    @staticmethod
    def _threshold(value: float) -> float:
        return _checks.real("threshold", value, low=0.0, high=2.0)

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.squeezers)
        return f"FeatureSqueezingDetector([{names}], threshold={self.threshold})"

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """Largest L1 distance between the probabilities on each input and on its squeezed copies.

        The inputs are squeezed and scored in chunks of the classifier's ``batch_size`` (a median
        squeezer holds ``size**2`` copies of what it squeezes), with the same scores as at once.

        Shape:
            - images: (B, C, H, W) raw inputs.
            - output: (B,) scores in [0, 2].
        """
        return self._score(images, "images")

    @torch.no_grad()
    def _score(self, images: torch.Tensor, name: str) -> torch.Tensor:
        """:meth:`score`, naming ``images`` as ``name`` (the caller's argument) when they are refused."""
        clf = self.classifier
        x = _checks.images(name, images, shape=clf.input_shape, bounds=clf.bounds)
        chunks = []
        for chunk in torch.split(x, clf.batch_size):
            p = clf.probs(chunk)
            scores = torch.zeros(chunk.shape[0], device=p.device)
            for s in self.squeezers:
                q = clf.probs(s(chunk.to(p.device)).clamp(clf.bounds.lower, clf.bounds.upper))
                scores = torch.maximum(scores, (p - q).abs().sum(1))
            chunks.append(scores)
        return torch.cat(chunks)

    def calibrate(self, clean_images: torch.Tensor, false_positive_rate: float = 0.05) -> float:
        """Set :attr:`threshold` so that about ``false_positive_rate`` of ``clean_images`` are flagged.

        Returns:
            The threshold.

        Raises:
            InvalidArgumentError: a rate outside (0, 1), or ``clean_images`` empty or not of the
                classifier's input shape and bounds.
            InvalidTypeError: ``clean_images`` is not a floating tensor.
        """
        rate = _checks.real("false_positive_rate", false_positive_rate, low=0.0, high=1.0, low_open=True)
        if rate >= 1.0:
            raise InvalidArgumentError(f"false_positive_rate must be in (0, 1), got {false_positive_rate}")
        scores = self._score(clean_images, "clean_images").double().cpu()
        self.threshold = self._threshold(float(torch.quantile(scores, 1.0 - rate)))
        return self.threshold

    def detect(self, images: torch.Tensor) -> torch.Tensor:
        """(B,) bool: which inputs are flagged (score above the threshold).

        Raises:
            InvalidArgumentError: no threshold yet (give one or call :meth:`calibrate`).
        """
        if self.threshold is None:
            raise InvalidArgumentError(
                "threshold is None: the detector is not calibrated; pass threshold= to "
                "FeatureSqueezingDetector or call calibrate(clean_images) first"
            )
        return self.score(images) > self.threshold

    def detection_rate(self, images: torch.Tensor) -> float:
        """Share of ``images`` that are flagged."""
        return float(self.detect(images).float().mean())
