"""Ensembles: several classifiers answer together."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from foolbench import _checks
from foolbench.errors import InvalidArgumentError, InvalidTypeError
from foolbench.models import BaseClassifier, Classifier, check_classifier

__all__ = ["Ensemble"]

_COMBINE = ("mean_probs", "mean_logits", "vote")


def _shared(c: BaseClassifier) -> dict[str, object]:
    return {"input_shape": c.input_shape, "num_classes": c.num_classes, "bounds": (*map(float, c.bounds),)}


def _same_classes(members: list[BaseClassifier]) -> None:
    """Refuse members that name their classes differently (outputs are combined index by index).

    The default names (``"0"``, ``"1"``, ...) say nothing about the classes, so they agree with any.
    """
    named = [(i, m.class_names) for i, m in enumerate(members) if m.class_names != _default_names(m.num_classes)]
    for i, names in named[1:]:
        j, first = named[0]
        if names != first:
            raise InvalidArgumentError(
                f"classifiers[{i}] has class_names={names}, but classifiers[{j}] has class_names={first}; "
                "ensemble members must share their classes, in the same order"
            )


def _default_names(num_classes: int) -> list[str]:
    return [str(i) for i in range(num_classes)]


class Ensemble(BaseClassifier):
    """Several classifiers answer together.

    ``mean_probs`` averages the members' probabilities (the logits returned are their
    log, so softmax gives the average back); ``mean_logits`` averages logits; ``vote``
    gives each class the share of members that predict it (ties broken by the mean
    probabilities; gradients flow through the mean probabilities, BPDA-style).

    Args:
        classifiers: two or more members sharing input shape, bounds and classes (the same class
            names in the same order, where two members name them other than ``"0"``, ``"1"``, ...).
        combine: ``"mean_probs"``, ``"mean_logits"`` or ``"vote"``.

    Raises:
        InvalidArgumentError: fewer than two members, mismatched members (class names included),
            unknown ``combine``.

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
            for attr, a in _shared(first).items():
                b = _shared(m)[attr]
                if a != b:
                    raise InvalidArgumentError(
                        f"classifiers[{i}] has {attr}={b}, but classifiers[0] has {attr}={a}; "
                        "ensemble members must share input shape, bounds and classes"
                    )
        _same_classes(members)
        self.combine = _checks.choice("combine", combine, _COMBINE)
        super().__init__(
            input_shape=first.input_shape,
            num_classes=first.num_classes,
            bounds=first.bounds,
            batch_size=min(m.batch_size for m in members),
            class_names=first.class_names,
        )
        self.members = nn.ModuleList(members)

    def _each(self) -> list[BaseClassifier]:
        return [m for m in self.members if isinstance(m, BaseClassifier)]  # every member is one

    @property
    def device(self) -> torch.device:
        return self._each()[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self._each()[0].dtype

    def refresh(self) -> None:
        """Each member's :meth:`~foolbench.models.BaseClassifier.refresh` (the members score with their own networks)."""
        for member in self._each():
            member.refresh()

    def identity(self) -> dict[str, Any]:
        """How the members are combined and each member's identity (their weights are the ensemble's)."""
        return {**super().identity(), "combine": self.combine, "members": [m.identity() for m in self._each()]}

    def reference(self) -> BaseClassifier:
        """The ensemble of the members' references (``self`` when every member is its own)."""
        refs = [m.reference() for m in self._each()]
        if all(r is m for r, m in zip(refs, self._each(), strict=True)):
            return self
        return Ensemble(refs, combine=self.combine)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([m(x).to(self.device) for m in self._each()])  # (M, B, K)
        if self.combine == "mean_logits":
            return outs.mean(0)
        log_mean = torch.logsumexp(F.log_softmax(outs, dim=2), dim=0) - math.log(len(self.members))
        if self.combine == "mean_probs":
            return log_mean
        votes = F.one_hot(outs.argmax(2), self.num_classes).sum(0).to(outs.dtype)  # (B, K)
        tie_break = 1e-3
        # log((votes + tie_break * mean) / (M + tie_break)) in log space: a class with no vote and a mean
        # probability that underflows (a logit gap past ~104 in float32) keeps a finite score
        vote_scores = torch.logaddexp(votes.log(), math.log(tie_break) + log_mean) - math.log(
            len(self.members) + tie_break
        )
        return log_mean + (vote_scores - log_mean).detach()

    def extra_repr(self) -> str:
        return f"{len(self.members)} members, combine={self.combine!r}, " + super().extra_repr()
