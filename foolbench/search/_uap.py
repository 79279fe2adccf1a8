"""Universal adversarial perturbations (Moosavi-Dezfooli et al. 2017), batched."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from foolbench import _checks
from foolbench.errors import InvalidArgumentError
from foolbench.models import BaseClassifier, Classifier, check_classifier
from foolbench.search._attacks import DeepFool, project

__all__ = ["UAPResult", "UniversalPerturbation", "fooling_rate", "transfer_matrix"]


def _apply(clf: Classifier, images: torch.Tensor, perturbation: torch.Tensor) -> torch.Tensor:
    lower, upper = clf.bounds
    return (images + perturbation.to(images)).clamp(lower, upper)


@torch.no_grad()
def fooling_rate(classifier: Classifier, images: torch.Tensor, perturbation: torch.Tensor) -> float:
    """Share of images whose predicted class changes when ``perturbation`` is added (then clipped to bounds).

    This is the fooling rate of Moosavi-Dezfooli et al. (2017): it compares the
    prediction on the perturbed image with the prediction on the clean one, so it
    needs no labels.

    Shape:
        - images: (B, C, H, W)
        - perturbation: (C, H, W) or (1, C, H, W)

    Examples:
        >>> import torch, foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> x, _ = fb.models.mnist_digits("test", limit=50)
        >>> fb.search.fooling_rate(clf, x, torch.zeros(1, 28, 28))
        0.0
    """
    clf = check_classifier(classifier)
    x = _checks.images("images", images, shape=clf.input_shape, bounds=clf.bounds)
    v = _perturbation(clf, perturbation)
    clean = clf.log_probs(x).argmax(1)
    fooled = clf.log_probs(_apply(clf, x.to(clean.device), v.to(clean.device))).argmax(1) != clean
    return float(fooled.float().mean())


def _perturbation(clf: Classifier, perturbation: Any) -> torch.Tensor:
    if not isinstance(perturbation, torch.Tensor) or not perturbation.is_floating_point():
        raise InvalidArgumentError(
            f"perturbation must be a floating tensor of shape {tuple(clf.input_shape)}, "
            f"got {type(perturbation).__name__}"
        )
    v = perturbation[0] if perturbation.dim() == 4 and perturbation.shape[0] == 1 else perturbation
    if tuple(v.shape) != tuple(clf.input_shape):
        raise InvalidArgumentError(
            f"perturbation must have shape {tuple(clf.input_shape)}, got {tuple(perturbation.shape)}"
        )
    if not bool(torch.isfinite(v).all()):
        raise InvalidArgumentError("perturbation must be finite, got NaN or inf")
    return v


def transfer_matrix(
    classifiers: Mapping[str, Classifier], perturbations: Mapping[str, torch.Tensor], images: torch.Tensor
) -> tuple[list[str], torch.Tensor]:
    """Fooling rate of each model's perturbation (rows) on every model (columns).

    Args:
        classifiers: models by name; all share the input shape.
        perturbations: one perturbation per name in ``classifiers`` (made for that model).
        images: (B, C, H, W) held-out images.

    Returns:
        ``(names, rates)`` with ``rates[i, j]`` the fooling rate of model i's perturbation on model j.

    Examples:
        >>> import torch, foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> x, _ = fb.models.mnist_digits("test", limit=20)
        >>> names, rates = transfer_matrix({"a": clf, "b": clf}, {"a": torch.zeros(1, 28, 28), "b": torch.zeros(1, 28, 28)}, x)
        >>> names, rates.tolist()
        (['a', 'b'], [[0.0, 0.0], [0.0, 0.0]])
    """
    names = list(classifiers)
    missing = [n for n in names if n not in perturbations]
    if missing:
        raise InvalidArgumentError(f"perturbations must have one entry per classifier; missing {missing}")
    rates = torch.zeros(len(names), len(names), dtype=torch.float64)
    for i, src in enumerate(names):
        for j, dst in enumerate(names):
            rates[i, j] = fooling_rate(classifiers[dst], images, perturbations[src])
    return names, rates


@dataclass(frozen=True)
class UAPResult:
    """A fitted universal perturbation.

    Attributes:
        perturbation: (C, H, W) the image-agnostic perturbation, inside the eps-ball.
        fooling_rate: its fooling rate on the fitting images.
        history: fooling rate on the fitting images after each pass (or epoch).
        passes: passes over the data used.
        seconds: wall time of the fit.
        eps, norm, method: the settings.

    Examples:
        >>> import foolbench as fb
        >>> x, _ = fb.models.mnist_digits("train", limit=32)
        >>> fit = fb.search.UniversalPerturbation(eps=0.2, method="sgd", max_passes=1).fit(fb.models.lenet_mnist(), x)
        >>> fit.perturbation.shape, 0.0 <= fit.fooling_rate <= 1.0
        (torch.Size([1, 28, 28]), True)
    """

    perturbation: torch.Tensor
    fooling_rate: float
    history: tuple[float, ...]
    passes: int
    seconds: float
    eps: float
    norm: str
    method: str


class UniversalPerturbation:
    """One perturbation that fools most inputs (Moosavi-Dezfooli et al., CVPR 2017).

    ``method="deepfool"`` is the original algorithm, batched: in each mini-batch, the
    images the current perturbation ``v`` does not fool yet get their minimal
    DeepFool step from ``x + v`` (all at once), the steps are averaged into ``v``,
    and ``v`` is projected back onto the eps-ball; passes continue until the
    fooling rate on the fitting set reaches ``1 - delta`` or ``max_passes``.
    ``method="sgd"`` is the stochastic variant (Shafahi et al. 2020): projected
    sign-gradient ascent of the clamped cross-entropy of the clean predictions over
    mini-batches.

    Args:
        eps: radius of the perturbation in raw input units.
        norm: ``"inf"`` or ``"2"``.
        method: ``"deepfool"`` or ``"sgd"``.
        delta: stop once the fooling rate reaches ``1 - delta``.
        max_passes: passes (epochs) over the fitting images.
        batch_size: mini-batch size.
        step_size: sgd step (default ``eps / 10``).
        deepfool_steps: linearisations per DeepFool call.
        overshoot: DeepFool overshoot.
        seed: seeds the shuffling; the global RNG is never used.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> x, _ = fb.models.mnist_digits("train", limit=200)
        >>> uap = fb.search.UniversalPerturbation(eps=0.3, method="sgd", max_passes=2, seed=0).fit(clf, x)
        >>> uap.perturbation.shape, float(uap.perturbation.abs().max()) <= 0.3 + 1e-6
        (torch.Size([1, 28, 28]), True)
    """

    def __init__(
        self,
        *,
        eps: float,
        norm: str = "inf",
        method: str = "deepfool",
        delta: float = 0.2,
        max_passes: int = 5,
        batch_size: int = 128,
        step_size: float | None = None,
        deepfool_steps: int = 10,
        overshoot: float = 0.02,
        seed: int | None = 0,
    ) -> None:
        self.eps = _checks.real("eps", eps, low=0.0)
        self.norm = _checks.choice("norm", norm, ("inf", "2"))
        self.method = _checks.choice("method", method, ("deepfool", "sgd"))
        self.delta = _checks.real("delta", delta, low=0.0, high=1.0)
        self.max_passes = _checks.positive_int("max_passes", max_passes)
        self.batch_size = _checks.positive_int("batch_size", batch_size)
        self.step_size = (
            self.eps / 10 if step_size is None else _checks.real("step_size", step_size, low=0.0, low_open=True)
        )
        self.deepfool = DeepFool(steps=deepfool_steps, overshoot=overshoot, norm=self.norm)
        self.seed = seed

    def __repr__(self) -> str:
        return (
            f"UniversalPerturbation(eps={self.eps:g}, norm={self.norm!r}, method={self.method!r}, "
            f"delta={self.delta:g}, max_passes={self.max_passes}, batch_size={self.batch_size}, seed={self.seed})"
        )

    def fit(self, classifier: Classifier, images: torch.Tensor) -> UAPResult:
        """Fit a universal perturbation on ``images`` (B, C, H, W); labels are the clean predictions."""
        clf = check_classifier(classifier)
        x = _checks.images("images", images, shape=clf.input_shape, bounds=clf.bounds)
        device = clf.device
        x = x.detach().to(device)
        gen = _checks.generator("seed", self.seed, device="cpu")
        t0 = time.perf_counter()
        clean = clf.log_probs(x).argmax(1)
        v = torch.zeros(clf.input_shape, device=device, dtype=x.dtype)
        history: list[float] = []
        rate = 0.0
        passes = 0
        for passes in range(1, self.max_passes + 1):  # noqa: B007 - passes is reported
            order = torch.randperm(x.shape[0], generator=gen).to(device)
            for idx in torch.split(order, self.batch_size):
                xb, yb = x[idx], clean[idx]
                v = (
                    self._deepfool_update(clf, xb, yb, v)
                    if self.method == "deepfool"
                    else self._sgd_update(clf, xb, yb, v)
                )
            with torch.no_grad():
                rate = float((clf.log_probs(_apply(clf, x, v)).argmax(1) != clean).float().mean())
            history.append(rate)
            if rate >= 1 - self.delta:
                break
        return UAPResult(
            perturbation=v.detach(),
            fooling_rate=rate,
            history=tuple(history),
            passes=passes,
            seconds=time.perf_counter() - t0,
            eps=self.eps,
            norm=self.norm,
            method=self.method,
        )

    def _deepfool_update(
        self, clf: BaseClassifier, xb: torch.Tensor, yb: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        with torch.no_grad():
            still = clf.log_probs(_apply(clf, xb, v)).argmax(1) == yb
        idx = torch.nonzero(still).flatten()
        if idx.numel() == 0:
            return v
        r, _ = self.deepfool.perturb(clf, _apply(clf, xb[idx], v))
        return project(v + r.sum(0), self.eps, self.norm)

    def _sgd_update(self, clf: Classifier, xb: torch.Tensor, yb: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        v = v.detach().requires_grad_(True)
        logits = clf(_apply(clf, xb, v))
        loss = F.cross_entropy(logits, yb, reduction="none").clamp(max=10.0).mean()
        (g,) = torch.autograd.grad(loss, v)
        if self.norm == "inf":
            step = self.step_size * g.sign()
        else:
            step = self.step_size * g / g.norm().clamp_min(1e-12)
        return project((v + step).detach(), self.eps, self.norm)
