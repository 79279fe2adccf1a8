"""Defended classifiers that wrap classifiers: input transformations and ensembles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from foolbench import _checks
from foolbench._filters import gaussian_blur, median_filter, reduce_bit_depth
from foolbench.errors import InvalidArgumentError, InvalidTypeError
from foolbench.models import BaseClassifier, Classifier, check_classifier

__all__ = [
    "BitDepthReduction",
    "Ensemble",
    "GaussianSmoothing",
    "InputTransformation",
    "MedianSmoothing",
    "Squeezer",
    "bit_depth",
    "gaussian",
    "median",
]


class Squeezer(nn.Module):
    """An input transformation ``x -> t(x)`` on raw inputs, with its name.

    Non-differentiable squeezers (median, bit depth) pass gradients straight through
    (BPDA, Athalye et al. 2018): the forward pass applies ``t`` and the backward pass
    treats it as the identity, so gradient attacks on a defended model stay adaptive.

    Args:
        name: short description used in reports (``"median 3x3"``).
        fn: the batched transformation, (B, C, H, W) -> (B, C, H, W).
        straight_through: use BPDA for the gradient.

    Examples:
        >>> import torch
        >>> sq = Squeezer("clip", lambda x: x.clamp(0.2, 0.8), straight_through=True)
        >>> x = torch.rand(1, 1, 4, 4, requires_grad=True)
        >>> torch.autograd.grad(sq(x).sum(), x)[0].unique().tolist()  # BPDA: identity gradient
        [1.0]
    """

    def __init__(self, name: str, fn: Any, *, straight_through: bool) -> None:
        super().__init__()
        self.name = name
        self.fn = fn
        self.straight_through = straight_through

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.straight_through:
            with torch.no_grad():
                y: torch.Tensor = self.fn(x)
            return x + (y - x).detach() if x.requires_grad else y
        out: torch.Tensor = self.fn(x)
        return out

    def extra_repr(self) -> str:
        return f"{self.name!r}, straight_through={self.straight_through}"


def gaussian(sigma: float) -> Squeezer:
    """Gaussian smoothing with standard deviation ``sigma`` pixels (differentiable).

    Raises:
        InvalidArgumentError: ``sigma`` is not > 0.

    Examples:
        >>> import torch
        >>> gaussian(1.0)(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """
    s = _checks.real("sigma", sigma, low=0.0, low_open=True)
    return Squeezer(f"gaussian sigma={s:g}", lambda x: gaussian_blur(x, s), straight_through=False)


def median(size: int) -> Squeezer:
    """Median smoothing over ``size`` x ``size`` windows (odd size >= 3; BPDA gradient).

    Raises:
        InvalidArgumentError: ``size`` is not an odd int >= 3.

    Examples:
        >>> import torch
        >>> median(3).name
        'median 3x3'
    """
    k = _checks.positive_int("size", size, minimum=3)
    if k % 2 == 0:
        raise InvalidArgumentError(f"size must be odd (the window needs a centre pixel), got {size}")
    return Squeezer(f"median {k}x{k}", lambda x: median_filter(x, k), straight_through=True)


def bit_depth(bits: int, bounds: Sequence[float] = (0.0, 1.0)) -> Squeezer:
    """Reduce inputs in ``bounds`` to ``bits`` bits per value (1..8; BPDA gradient).

    Raises:
        InvalidArgumentError: ``bits`` outside 1..8.

    Examples:
        >>> import torch
        >>> bit_depth(1)(torch.tensor([[[[0.2, 0.8]]]])).tolist()
        [[[[0.0, 1.0]]]]
    """
    b = _checks.positive_int("bits", bits)
    if not 1 <= b <= 8:
        raise InvalidArgumentError(f"bits must be an int in 1..8, got {bits}")
    lo, hi = float(bounds[0]), float(bounds[1])
    return Squeezer(f"{b}-bit", lambda x: reduce_bit_depth(x, b, lo, hi), straight_through=True)


class InputTransformation(BaseClassifier):
    """A classifier that transforms its input before the wrapped classifier sees it.

    Args:
        classifier: the model to defend.
        squeezer: the transformation (see :func:`gaussian`, :func:`median`, :func:`bit_depth`).

    Shape:
        - x: (B, C, H, W) raw inputs; output logits (B, K).

    Examples:
        >>> import torch, foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> smooth = fb.defenses.InputTransformation(clf, fb.defenses.median(3))
        >>> smooth.probs(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, classifier: Classifier, squeezer: Squeezer) -> None:
        clf = check_classifier(classifier)
        if not isinstance(squeezer, Squeezer):
            raise InvalidTypeError(f"squeezer must be a foolbench.defenses.Squeezer, got {type(squeezer).__name__}")
        super().__init__(
            input_shape=clf.input_shape,
            num_classes=clf.num_classes,
            bounds=clf.bounds,
            batch_size=getattr(clf, "batch_size", 256),
            class_names=getattr(clf, "class_names", None),
        )
        self.classifier = clf
        self.squeezer = squeezer

    @property
    def device(self) -> torch.device:
        return torch.device(getattr(self.classifier, "device", "cpu"))

    @property
    def dtype(self) -> torch.dtype:
        dtype: torch.dtype = getattr(self.classifier, "dtype", torch.float32)
        return dtype

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.squeezer(x))
        return out

    def extra_repr(self) -> str:
        return f"{self.squeezer.name}, " + super().extra_repr()


class GaussianSmoothing(InputTransformation):
    """The wrapped classifier sees Gaussian-smoothed inputs (differentiable).

    Args:
        classifier: the model to defend.
        sigma: standard deviation in pixels, > 0.

    Examples:
        >>> import torch, foolbench as fb
        >>> fb.defenses.GaussianSmoothing(fb.models.lenet_mnist(), 1.0).predict(torch.rand(3, 1, 28, 28)).shape
        torch.Size([3])
    """

    def __init__(self, classifier: Classifier, sigma: float) -> None:
        super().__init__(classifier, gaussian(sigma))


class MedianSmoothing(InputTransformation):
    """The wrapped classifier sees median-filtered inputs; gradients pass straight through (BPDA).

    Args:
        classifier: the model to defend.
        size: odd window side, >= 3.

    Examples:
        >>> import torch, foolbench as fb
        >>> fb.defenses.MedianSmoothing(fb.models.lenet_mnist(), 3).probs(torch.rand(1, 1, 28, 28)).shape
        torch.Size([1, 10])
    """

    def __init__(self, classifier: Classifier, size: int) -> None:
        super().__init__(classifier, median(size))


class BitDepthReduction(InputTransformation):
    """The wrapped classifier sees inputs reduced to ``bits`` bits; gradients pass straight through (BPDA).

    Args:
        classifier: the model to defend.
        bits: bits per value, 1..8.

    Examples:
        >>> import torch, foolbench as fb
        >>> fb.defenses.BitDepthReduction(fb.models.lenet_mnist(), 1).probs(torch.rand(1, 1, 28, 28)).shape
        torch.Size([1, 10])
    """

    def __init__(self, classifier: Classifier, bits: int) -> None:
        clf = check_classifier(classifier)
        super().__init__(clf, bit_depth(bits, clf.bounds))


_COMBINE = ("mean_probs", "mean_logits", "vote")


def _attr(classifier: Classifier, name: str) -> Any:
    value = getattr(classifier, name)
    return tuple(float(v) for v in value) if name == "bounds" else value


class Ensemble(BaseClassifier):
    """Several classifiers answer together.

    ``mean_probs`` averages the members' probabilities (the logits returned are their
    log, so softmax gives the average back); ``mean_logits`` averages logits; ``vote``
    gives each class the share of members that predict it (ties broken by the mean
    probabilities; gradients flow through the mean probabilities, BPDA-style).

    Args:
        classifiers: two or more members sharing input shape, bounds and number of classes.
        combine: ``"mean_probs"``, ``"mean_logits"`` or ``"vote"``.

    Raises:
        InvalidArgumentError: fewer than two members, mismatched members, unknown ``combine``.

    Shape:
        - x: (B, C, H, W) raw inputs; output logits (B, K).

    Examples:
        >>> import torch, foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> ens = fb.defenses.Ensemble([clf, fb.defenses.MedianSmoothing(clf, 3)], combine="vote")
        >>> ens.predict(torch.rand(4, 1, 28, 28)).shape
        torch.Size([4])
    """

    def __init__(self, classifiers: Sequence[Classifier], *, combine: str = "mean_probs") -> None:
        if not isinstance(classifiers, (list, tuple)):
            raise InvalidTypeError(
                f"classifiers must be a list or tuple of classifiers, got {type(classifiers).__name__}"
            )
        members = [check_classifier(c, f"classifiers[{i}]") for i, c in enumerate(classifiers)]
        if len(members) < 2:
            raise InvalidArgumentError(f"classifiers must hold at least 2 members, got {len(members)}")
        first = members[0]
        for i, m in enumerate(members[1:], start=1):
            for attr in ("input_shape", "num_classes", "bounds"):
                a, b = _attr(first, attr), _attr(m, attr)
                if a != b:
                    raise InvalidArgumentError(
                        f"classifiers[{i}] has {attr}={b}, but classifiers[0] has {attr}={a}; "
                        "ensemble members must share input shape, bounds and classes"
                    )
        self.combine = _checks.choice("combine", combine, _COMBINE)
        super().__init__(
            input_shape=first.input_shape,
            num_classes=first.num_classes,
            bounds=first.bounds,
            batch_size=min(getattr(m, "batch_size", 256) for m in members),
            class_names=getattr(first, "class_names", None),
        )
        self.members = nn.ModuleList([m for m in members if isinstance(m, nn.Module)])
        self._members = members

    @property
    def device(self) -> torch.device:
        return torch.device(getattr(self._members[0], "device", "cpu"))

    @property
    def dtype(self) -> torch.dtype:
        dtype: torch.dtype = getattr(self._members[0], "dtype", torch.float32)
        return dtype

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([m(x).to(self.device) for m in self._members])  # (M, B, K)
        if self.combine == "mean_logits":
            return outs.mean(0)
        log_mean = torch.logsumexp(F.log_softmax(outs, dim=2), dim=0) - math.log(len(self._members))
        if self.combine == "mean_probs":
            return log_mean
        votes = F.one_hot(outs.argmax(2), self.num_classes).sum(0).to(outs.dtype)  # (B, K)
        tie_break = 1e-3
        vote_scores = torch.log((votes + tie_break * log_mean.exp()) / (len(self._members) + tie_break))
        return log_mean + (vote_scores - log_mean).detach()

    def extra_repr(self) -> str:
        return f"{len(self._members)} members, combine={self.combine!r}, " + super().extra_repr()
