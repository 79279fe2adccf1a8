"""Perturbation attacks: FGSM, PGD and DeepFool, batched, with one calling convention."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from foolbench import _checks
from foolbench.errors import InvalidArgumentError
from foolbench.models import Classifier, check_classifier

__all__ = ["FGSM", "PGD", "Attack", "AttackResult", "DeepFool", "deepfool_step", "lp_norm", "project"]


def lp_norm(x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of a (B, ...) batch: ``"inf"`` or ``"2"`` -> (B,).

    Examples:
        >>> import torch
        >>> lp_norm(torch.ones(2, 1, 2, 2), "2").tolist()
        [2.0, 2.0]
    """
    flat = x.flatten(1)
    return flat.abs().amax(1) if norm == "inf" else flat.norm(dim=1)


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project each perturbation of a (B, ...) batch (or a single one) onto the ``norm`` ball of radius ``eps``.

    Examples:
        >>> import torch
        >>> round(float(project(torch.full((1, 1, 2, 2), 0.5), 0.1, "inf").max()), 6)
        0.1
    """
    if norm == "inf":
        return delta.clamp(-eps, eps)
    batch = delta if delta.dim() == 4 else delta[None]
    n = batch.flatten(1).norm(dim=1).clamp_min(1e-12)
    scaled: torch.Tensor = batch * (eps / n).clamp(max=1.0).view(-1, *([1] * (batch.dim() - 1)))
    return scaled if delta.dim() == 4 else scaled[0]


@dataclass(frozen=True)
class AttackResult:
    """What a perturbation attack returns.

    Attributes:
        adversarial: (B, C, H, W) perturbed images inside the classifier's bounds.
        success: (B,) bool, misclassified (untargeted) or classified as the target (targeted).
        norms: (B,) size of the perturbation in the attack's norm.
        queries: forward + backward passes the attack used (per image).
        labels: (B,) true labels.
        target: (B,) target classes, or None for an untargeted attack.
        eps: the budget used (None for minimal-perturbation attacks such as DeepFool).
        norm: ``"inf"`` or ``"2"``.

    Examples:
        >>> import foolbench as fb
        >>> x, y = fb.models.mnist_digits("test", limit=8)
        >>> res = fb.search.FGSM(eps=0.3)(fb.models.lenet_mnist(), x, y)
        >>> res.adversarial.shape, res.success.dtype, res.norm
        (torch.Size([8, 1, 28, 28]), torch.bool, 'inf')
    """

    adversarial: torch.Tensor
    success: torch.Tensor
    norms: torch.Tensor
    queries: int
    labels: torch.Tensor
    target: torch.Tensor | None
    eps: float | None
    norm: str

    @property
    def success_rate(self) -> float:
        """Share of images the attack succeeded on."""
        return float(self.success.float().mean())


class Attack(ABC):
    """Base of perturbation attacks: checks inputs, runs :meth:`_run`, clips, re-checks success.

    Call as ``attack(classifier, images, labels, target=None)``.

    Examples:
        >>> import foolbench as fb
        >>> isinstance(fb.search.PGD(eps=0.1), fb.search.Attack)
        True
    """

    norm: str = "inf"
    eps: float | None = None

    @abstractmethod
    def _run(
        self, clf: Classifier, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, gen: torch.Generator
    ) -> tuple[torch.Tensor, int]:
        """Adversarial images (unclipped is fine) and the queries used."""

    def __call__(
        self, classifier: Classifier, images: torch.Tensor, labels: Any, *, target: Any = None, seed: int | None = 0
    ) -> AttackResult:
        """Attack a batch.

        Args:
            classifier: the model (its ``training`` flags are left as found).
            images: (B, C, H, W) raw images inside the classifier's bounds.
            labels: (B,) true class indices.
            target: None (untargeted), an int class, or (B,) target classes that differ from ``labels``.
            seed: seeds the random start, if the attack has one.

        Returns:
            An :class:`AttackResult`; adversarial images stay inside the bounds and the eps-ball.

        Raises:
            InvalidArgumentError: bad shapes, labels or targets out of range, targets equal to labels,
                images outside the bounds.
        """
        clf = check_classifier(classifier)
        x = _checks.images("images", images, shape=clf.input_shape, bounds=clf.bounds)
        device = clf.device
        x = x.detach().to(device)
        y = _checks.labels("labels", labels, batch=x.shape[0], num_classes=clf.num_classes, device=device)
        t = None
        if target is not None:
            if isinstance(target, int) and not isinstance(target, bool):
                target = torch.full_like(y, target)
            t = _checks.labels("target", target, batch=x.shape[0], num_classes=clf.num_classes, device=device)
            if bool((t == y).any()):
                raise InvalidArgumentError(
                    f"target must differ from labels for a targeted attack; they are equal at "
                    f"{torch.nonzero(t == y).flatten()[:5].tolist()}"
                )
        gen = _checks.generator("seed", seed, device=device)
        adv, queries = self._run(clf, x, y, t, gen)
        lower, upper = clf.bounds
        if self.eps is not None:
            adv = x + project(adv - x, self.eps, self.norm)
        adv = adv.clamp(lower, upper).detach()
        pred = clf.log_probs(adv).argmax(1)
        success = pred != y if t is None else pred == t
        return AttackResult(
            adversarial=adv,
            success=success,
            norms=lp_norm(adv - x, self.norm),
            queries=queries + 1,
            labels=y,
            target=t,
            eps=self.eps,
            norm=self.norm,
        )

    def sweep(
        self,
        classifier: Classifier,
        images: torch.Tensor,
        labels: Any,
        eps: Sequence[float],
        *,
        target: Any = None,
        seed: int | None = 0,
    ) -> list[AttackResult]:
        """Run the attack once per budget in ``eps``; returns the results in the same order."""
        out = []
        for i, e in enumerate(eps):
            attack = copy.copy(self)
            attack.eps = _checks.real(f"eps[{i}]", e, low=0.0)
            out.append(attack(classifier, images, labels, target=target, seed=seed))
        return out


def _loss_grad(clf: Classifier, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
    """Gradient of the attack objective: ascend CE(y) untargeted, descend CE(target) targeted."""
    x = x.detach().requires_grad_(True)
    logits = clf(x)
    loss = F.cross_entropy(logits, y, reduction="sum") if t is None else -F.cross_entropy(logits, t, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


class FGSM(Attack):
    """Fast gradient sign method (Goodfellow et al. 2015): ``x' = x + eps * sign(grad)``.

    Args:
        eps: L-inf budget in raw input units (>= 0).

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> x, y = fb.models.mnist_digits("test", limit=8)
        >>> res = fb.search.FGSM(eps=0.3)(clf, x, y)
        >>> bool(res.norms.max() <= 0.3 + 1e-6)
        True
    """

    def __init__(self, eps: float) -> None:
        self.eps = _checks.real("eps", eps, low=0.0)
        self.norm = "inf"

    def __repr__(self) -> str:
        return f"FGSM(eps={self.eps:g})"

    def _run(
        self, clf: Classifier, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None, gen: torch.Generator
    ) -> tuple[torch.Tensor, int]:
        assert self.eps is not None
        return x + self.eps * _loss_grad(clf, x, y, t).sign(), 1


class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018), L-inf or L2, targeted or untargeted.

    Args:
        eps: radius of the perturbation ball in raw input units.
        steps: gradient steps.
        step_size: size of each step (default ``2.5 * eps / steps``).
        norm: ``"inf"`` (sign steps) or ``"2"`` (normalised gradient steps).
        random_start: start from a uniform random point of the ball.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> x, y = fb.models.mnist_digits("test", limit=16)
        >>> res = fb.search.PGD(eps=0.3, steps=20)(clf, x, y)
        >>> res.success_rate > 0.5
        True
    """

    def __init__(
        self,
        eps: float,
        steps: int = 40,
        step_size: float | None = None,
        *,
        norm: str = "inf",
        random_start: bool = True,
    ) -> None:
        self.eps = _checks.real("eps", eps, low=0.0)
        self.steps = _checks.positive_int("steps", steps)
        self.step_size = None if step_size is None else _checks.real("step_size", step_size, low=0.0, low_open=True)
        self.norm = _checks.choice("norm", norm, ("inf", "2"))
        self.random_start = bool(random_start)

    def __repr__(self) -> str:
        return (
            f"PGD(eps={self.eps:g}, steps={self.steps}, step_size={self.step_size}, norm={self.norm!r}, "
            f"random_start={self.random_start})"
        )

    def _run(
        self, clf: Classifier, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None, gen: torch.Generator
    ) -> tuple[torch.Tensor, int]:
        eps = self.eps
        assert eps is not None
        alpha = self.step_size if self.step_size is not None else 2.5 * eps / self.steps
        lower, upper = clf.bounds
        delta = torch.zeros_like(x)
        if self.random_start and eps > 0:
            if self.norm == "inf":
                delta = (torch.rand(x.shape, generator=gen, device=gen.device).to(x) * 2 - 1) * eps
            else:
                d = torch.randn(x.shape, generator=gen, device=gen.device).to(x)
                r = torch.rand(x.shape[0], generator=gen, device=gen.device).to(x) ** (1.0 / d[0].numel())
                delta = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1) * (eps * r).view(-1, 1, 1, 1)
        adv = (x + delta).clamp(lower, upper)
        for _ in range(self.steps):
            g = _loss_grad(clf, adv, y, t)
            if self.norm == "inf":
                step = alpha * g.sign()
            else:
                step = alpha * g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            adv = (x + project(adv + step - x, eps, self.norm)).clamp(lower, upper)
        return adv, self.steps


def deepfool_step(clf: Classifier, x: torch.Tensor, candidates: torch.Tensor, norm: str) -> torch.Tensor:
    """One linearised DeepFool step for a batch: the smallest move to the nearest candidate boundary.

    Args:
        clf: the classifier.
        x: (B, C, H, W) current points.
        candidates: (B, J) class indices; column 0 is the class to leave.
        norm: ``"2"`` or ``"inf"``.

    Returns:
        (B, C, H, W) step ``r`` (without overshoot).
    """
    x = x.detach().requires_grad_(True)
    logits = clf(x)
    picked = logits.gather(1, candidates)  # (B, J)
    grads = []
    for j in range(candidates.shape[1]):
        (g,) = torch.autograd.grad(picked[:, j].sum(), x, retain_graph=j + 1 < candidates.shape[1])
        grads.append(g)
    w = torch.stack(grads[1:], 1) - grads[0][:, None]  # (B, J-1, C, H, W)
    f = (picked[:, 1:] - picked[:, :1]).detach()  # (B, J-1), negative while still class 0
    wn = w.flatten(2).abs().sum(2) if norm == "inf" else w.flatten(2).norm(dim=2)
    dist = f.abs() / wn.clamp_min(1e-12)
    best = dist.argmin(1)
    idx = torch.arange(x.shape[0], device=x.device)
    wb, fb_, nb = w[idx, best], f[idx, best].abs() + 1e-4, wn[idx, best].clamp_min(1e-12)
    shape = (-1, 1, 1, 1)
    if norm == "inf":
        return (fb_ / nb).view(shape) * wb.sign()
    return (fb_ / nb**2).view(shape) * wb


class DeepFool(Attack):
    """DeepFool (Moosavi-Dezfooli et al. 2016): a small perturbation to the nearest decision boundary.

    The whole batch is linearised at once; each image stops as soon as its label changes.
    Only untargeted.

    Args:
        steps: at most this many linearisations.
        overshoot: the accumulated step is multiplied by ``1 + overshoot``.
        candidates: how many top classes are considered as boundaries (>= 2).
        norm: ``"2"`` or ``"inf"``.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> x, y = fb.models.mnist_digits("test", limit=8)
        >>> fb.search.DeepFool(steps=50)(clf, x, y).success_rate
        1.0
    """

    def __init__(self, steps: int = 50, overshoot: float = 0.02, candidates: int = 10, *, norm: str = "2") -> None:
        self.steps = _checks.positive_int("steps", steps)
        self.overshoot = _checks.real("overshoot", overshoot, low=0.0)
        self.candidates = _checks.positive_int("candidates", candidates, minimum=2)
        self.norm = _checks.choice("norm", norm, ("inf", "2"))
        self.eps = None

    def __repr__(self) -> str:
        return (
            f"DeepFool(steps={self.steps}, overshoot={self.overshoot:g}, candidates={self.candidates}, "
            f"norm={self.norm!r})"
        )

    def __call__(
        self, classifier: Classifier, images: torch.Tensor, labels: Any, *, target: Any = None, seed: int | None = 0
    ) -> AttackResult:
        if target is not None:
            raise InvalidArgumentError("DeepFool is untargeted: target must be None")
        return super().__call__(classifier, images, labels, seed=seed)

    def perturb(self, clf: Classifier, x: torch.Tensor, start: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """Minimal perturbations (B, C, H, W) that change each image's current prediction, and steps used.

        ``start`` (optional) is an initial perturbation added to ``x`` (used by universal perturbations).
        """
        lower, upper = clf.bounds
        base = x if start is None else (x + start).clamp(lower, upper)
        with torch.no_grad():
            first = clf(base)
        k = min(self.candidates, first.shape[1])
        cand = first.topk(k, dim=1).indices
        label = cand[:, 0]
        r_tot = torch.zeros_like(x)
        active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        used = 0
        for _ in range(self.steps):
            idx = torch.nonzero(active).flatten()
            if idx.numel() == 0:
                break
            cur = (base[idx] + (1 + self.overshoot) * r_tot[idx]).clamp(lower, upper)
            r_tot[idx] += deepfool_step(clf, cur, cand[idx], self.norm)
            used += 1
            with torch.no_grad():
                pred = clf((base[idx] + (1 + self.overshoot) * r_tot[idx]).clamp(lower, upper)).argmax(1)
            active[idx] = pred == label[idx]
        adv = (base + (1 + self.overshoot) * r_tot).clamp(lower, upper)
        return adv - x, used

    def _run(
        self, clf: Classifier, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None, gen: torch.Generator
    ) -> tuple[torch.Tensor, int]:
        r, used = self.perturb(clf, x)
        return x + r, used * (self.candidates + 1)
