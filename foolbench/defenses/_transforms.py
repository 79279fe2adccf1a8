"""Input transformations (squeezers) and the classifiers that apply them before the model sees an input."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from foolbench import _checks, _io
from foolbench._filters import gaussian_blur, median_filter, reduce_bit_depth
from foolbench.errors import InvalidArgumentError, InvalidTypeError
from foolbench.models import BaseClassifier, Bounds, Classifier, check_classifier

__all__ = [
    "BitDepthReduction",
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
        fn: the batched transformation, (B, C, H, W) -> (B, C, H, W); a module-level function or a
            :func:`functools.partial` of one keeps the squeezer (and a classifier holding it) picklable,
            a lambda does not.
        straight_through: use BPDA for the gradient.
        bounds: the input range the transformation was built for, or None when it works
            on any range; a classifier with other bounds refuses it.

    Examples:
        >>> import torch
        >>> sq = Squeezer("clip", lambda x: x.clamp(0.2, 0.8), straight_through=True)
        >>> x = torch.rand(1, 1, 4, 4, requires_grad=True)
        >>> torch.autograd.grad(sq(x).sum(), x)[0].unique().tolist()  # BPDA: identity gradient
        [1.0]
    """

    def __init__(self, name: str, fn: Any, *, straight_through: bool, bounds: Sequence[float] | None = None) -> None:
        super().__init__()
        self.name = name
        self.fn = fn
        self.straight_through = straight_through
        self.bounds = None if bounds is None else Bounds(float(bounds[0]), float(bounds[1]))

    def check_bounds(self, classifier: BaseClassifier, name: str = "squeezer") -> None:
        """Refuse a classifier whose input bounds differ from those this squeezer was built for.

        Raises:
            InvalidArgumentError: the bounds differ.
        """
        if self.bounds is not None and tuple(self.bounds) != tuple(classifier.bounds):
            lo, hi = classifier.bounds
            raise InvalidArgumentError(
                f"{name} {self.name!r} was built for bounds ({self.bounds.lower:g}, {self.bounds.upper:g}), "
                f"but the classifier's bounds are ({lo:g}, {hi:g}); build it for the classifier's bounds, "
                f"e.g. bit_depth(bits, bounds=({lo:g}, {hi:g}))"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.straight_through:
            with torch.no_grad():
                y: torch.Tensor = self.fn(x)
            return x + (y - x).detach() if x.requires_grad else y
        out: torch.Tensor = self.fn(x)
        return out

    def extra_repr(self) -> str:
        bounds = "" if self.bounds is None else f", bounds=({self.bounds.lower:g}, {self.bounds.upper:g})"
        return f"{self.name!r}, straight_through={self.straight_through}{bounds}"


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
    # the exact number (its name is in the classifier's identity: 0.5 and 0.4999996 are other squeezers)
    name = f"gaussian sigma={_io.exact_number(s)}"
    return Squeezer(name, functools.partial(gaussian_blur, sigma=s), straight_through=False)


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
    return Squeezer(f"median {k}x{k}", functools.partial(median_filter, size=k), straight_through=True)


def bit_depth(bits: int, bounds: Sequence[float] = (0.0, 1.0)) -> Squeezer:
    """Reduce inputs in ``bounds`` to ``bits`` bits per value (1..8; BPDA gradient).

    The squeezer only fits classifiers with the same ``bounds``; others refuse it.

    Raises:
        InvalidArgumentError: ``bits`` outside 1..8, or bad bounds.

    Examples:
        >>> import torch
        >>> bit_depth(1)(torch.tensor([[[[0.2, 0.8]]]])).tolist()
        [[[[0.0, 1.0]]]]
    """
    b = _checks.positive_int("bits", bits)
    if not 1 <= b <= 8:
        raise InvalidArgumentError(f"bits must be an int in 1..8, got {bits}")
    if not isinstance(bounds, Sequence) or len(bounds) != 2:
        raise InvalidArgumentError(f"bounds must be a (lower, upper) pair, got {bounds!r}")
    lo, hi = _checks.real("bounds[0]", bounds[0]), _checks.real("bounds[1]", bounds[1])
    if not lo < hi:
        raise InvalidArgumentError(f"bounds must satisfy lower < upper, got {tuple(bounds)!r}")
    return Squeezer(
        f"{b}-bit",
        functools.partial(reduce_bit_depth, bits=b, lower=lo, upper=hi),
        straight_through=True,
        bounds=(lo, hi),
    )


class InputTransformation(BaseClassifier):
    """A classifier that transforms its input before the wrapped classifier sees it.

    The transformed batch is clamped to the classifier's bounds (as
    :class:`~foolbench.defenses.FeatureSqueezingDetector` does), so a squeezer that leaves them (a
    contrast stretch; a Gaussian blur, which can end a rounding error above the upper bound) still
    gives the wrapped classifier valid inputs. Behind a straight-through squeezer the clamp passes the
    gradient straight through as well; behind a differentiable one it is part of the function.

    Args:
        classifier: the model to defend.
        squeezer: the transformation (see :func:`gaussian`, :func:`median`, :func:`bit_depth`).

    Shape:
        - x: (B, C, H, W) raw inputs; output logits (B, K).

    Raises:
        InvalidTypeError: ``squeezer`` is not a :class:`Squeezer`, or ``classifier`` no classifier.
        InvalidArgumentError: the squeezer was built for other bounds than the classifier's.

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
        squeezer.check_bounds(clf)
        super().__init__(
            input_shape=clf.input_shape,
            num_classes=clf.num_classes,
            bounds=clf.bounds,
            batch_size=clf.batch_size,
            class_names=clf.class_names,
        )
        self.classifier = clf
        self.squeezer = squeezer

    @property
    def device(self) -> torch.device:
        return self.classifier.device

    @property
    def dtype(self) -> torch.dtype:
        return self.classifier.dtype

    def network(self) -> nn.Module:
        return self.classifier.network()

    def reference(self) -> BaseClassifier:
        """The same transformation in front of the wrapped classifier's reference."""
        ref = self.classifier.reference()
        return self if ref is self.classifier else InputTransformation(ref, self.squeezer)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.squeezer(x)
        inside = squeezed.clamp(self.bounds.lower, self.bounds.upper)  # as FeatureSqueezingDetector
        if self.squeezer.straight_through and squeezed.requires_grad:
            inside = squeezed + (inside - squeezed).detach()  # the clamp passes the gradient through too
        out: torch.Tensor = self.classifier(inside)
        return out

    def identity(self) -> dict[str, Any]:
        """The squeezer (name and bounds) and the identity of the classifier behind it."""
        bounds = None if self.squeezer.bounds is None else list(self.squeezer.bounds)
        squeezer = {"name": self.squeezer.name, "bounds": bounds}
        return {**super().identity(), "squeezer": squeezer, "classifier": self.classifier.identity()}

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
