"""Perturbation attacks: FGSM, PGD and DeepFool, batched, with one calling convention.

Square Attack and Carlini-Wagner L2 live in their own modules and share the base here.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from foolbench import _checks, _io
from foolbench.errors import InvalidArgumentError, InvalidTypeError, ModelOutputError
from foolbench.models import BaseClassifier, Classifier, check_classifier
from foolbench.search import _calls

__all__ = ["FGSM", "PGD", "Attack", "AttackResult", "DeepFool", "deepfool_step", "lp_norm", "project"]


def lp_norm(x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of a (B, ...) batch (two or more dimensions): ``"inf"`` or ``"2"`` -> (B,).

    Raises:
        InvalidTypeError: ``x`` is not a tensor.
        InvalidArgumentError: ``norm`` is not ``"inf"`` or ``"2"``, or ``x`` has fewer than two dimensions.

    Examples:
        >>> import torch
        >>> lp_norm(torch.ones(2, 1, 2, 2), "2").tolist()
        [2.0, 2.0]
    """
    norm = _checks.choice("norm", norm, ("inf", "2"))
    if not isinstance(x, torch.Tensor):
        raise InvalidTypeError(f"x must be a tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise InvalidArgumentError(f"x must be a (B, ...) batch of two or more dimensions, got shape {tuple(x.shape)}")
    flat = x.flatten(1)
    return flat.abs().amax(1) if norm == "inf" else flat.norm(dim=1)


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project each perturbation of a batch (or a single one) onto the ``norm`` ball of radius ``eps``.

    A (C, H, W) tensor is one perturbation (of one image); any other tensor of two or more
    dimensions, such as (B, C, H, W) images or (B, D) flat vectors, is a batch with one
    perturbation per row.

    Raises:
        InvalidTypeError: ``delta`` is not a tensor.
        InvalidArgumentError: ``norm`` is not ``"inf"`` or ``"2"``, ``eps`` is negative, or ``delta``
            has fewer than two dimensions.

    Examples:
        >>> import torch
        >>> round(float(project(torch.full((1, 1, 2, 2), 0.5), 0.1, "inf").max()), 6)
        0.1
        >>> project(torch.ones(3, 4), 1.0, "2").norm(dim=1).tolist()
        [1.0, 1.0, 1.0]
    """
    norm = _checks.choice("norm", norm, ("inf", "2"))
    eps = _checks.real("eps", eps, low=0.0)
    if not isinstance(delta, torch.Tensor):
        raise InvalidTypeError(f"delta must be a tensor, got {type(delta).__name__}")
    if delta.dim() < 2:
        raise InvalidArgumentError(
            f"delta must be a (C, H, W) perturbation or a (B, ...) batch of them, got shape {tuple(delta.shape)}"
        )
    if norm == "inf":
        return delta.clamp(-eps, eps)
    single = delta.dim() == 3
    batch = delta[None] if single else delta
    n = batch.flatten(1).norm(dim=1).clamp_min(1e-12)
    scaled: torch.Tensor = batch * (eps / n).clamp(max=1.0).view(-1, *([1] * (batch.dim() - 1)))
    return scaled[0] if single else scaled


@dataclass(frozen=True)
class AttackResult:
    """What a perturbation attack returns.

    Attributes:
        adversarial: (B, C, H, W) perturbed images inside the classifier's bounds.
        success: (B,) bool, misclassified (untargeted) or classified as the target (targeted).
        norms: (B,) size of the perturbation in the attack's norm.
        queries: model passes (forward or forward + backward) per image, the most any image used.
        labels: (B,) true labels.
        target: (B,) target classes, or None for an untargeted attack.
        eps: the budget used (None for minimal-perturbation attacks such as DeepFool).
        norm: ``"inf"`` or ``"2"``.
        predicted: (B,) the classifier's class for each adversarial image (None if not recorded).
        attack: the attack's ``repr`` (its settings).

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
    predicted: torch.Tensor | None = None
    attack: str = ""

    @property
    def success_rate(self) -> float:
        """Share of images the attack succeeded on."""
        return float(self.success.float().mean())

    def __repr__(self) -> str:
        ok = self.norms[self.success]
        median = f"{float(ok.median()):.4g}" if ok.numel() else "n/a"
        return (
            f"AttackResult(attack={self.attack!r}, images={self.success.shape[0]}, "
            f"success_rate={self.success_rate:.4f}, median_norm_of_successes={median}, "
            f"norm={self.norm!r}, eps={self.eps}, queries={self.queries})"
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary: settings, success rate, norms of the successful perturbations, per image."""
        ok = self.norms[self.success].double()
        pred = None if self.predicted is None else self.predicted.tolist()
        tgt = None if self.target is None else self.target.tolist()
        return {
            "method": "attack",
            "attack": self.attack,
            "images": int(self.success.shape[0]),
            "targeted": self.target is not None,
            "eps": self.eps,
            "norm": self.norm,
            "queries": self.queries,
            "success_rate": self.success_rate,
            "succeeded": int(self.success.sum()),
            "median_norm_of_successes": float(ok.median()) if ok.numel() else None,
            "mean_norm_of_successes": float(ok.mean()) if ok.numel() else None,
            "per_image": [
                {
                    "label": int(lbl),
                    "target": None if tgt is None else tgt[i],
                    "predicted": None if pred is None else pred[i],
                    "success": bool(s),
                    "norm": float(n),
                }
                for i, (lbl, s, n) in enumerate(
                    zip(self.labels.tolist(), self.success.tolist(), self.norms.tolist(), strict=True)
                )
            ],
        }

    def to_markdown(self, title: str = "Adversarial examples") -> str:
        """A short Markdown report: settings and totals."""
        s = self.summary()
        median = s["median_norm_of_successes"]
        return (
            f"# {title}\n\nAttack: `{self.attack}`; {s['images']} images, "
            f"{'targeted' if s['targeted'] else 'untargeted'}, norm L{self.norm}, eps {self.eps}.\n\n"
            f"Success: {s['succeeded']}/{s['images']} ({100 * self.success_rate:.1f}%); median "
            f"L{self.norm} norm of the successful perturbations: "
            f"{'-' if median is None else f'{median:.4g}'}; {self.queries} model passes per image at most.\n"
        )

    def save(self, out_dir: str | Path, *, prefix: str = "", title: str = "Adversarial examples") -> dict[str, Path]:
        """Write ``{prefix}images.png`` (up to 64 images captioned ``label->predicted``), ``{prefix}summary.json``,
        ``{prefix}report.md`` and ``{prefix}adversarial.pt`` (the raw tensors) to ``out_dir``; returns the paths.

        Every file is written atomically (a crash leaves the old file or the new one).
        """
        out = Path(out_dir)
        shown = min(64, self.adversarial.shape[0])
        pred = self.predicted if self.predicted is not None else torch.full_like(self.labels, -1)
        captions = [
            f"{int(lbl)}->{int(p)}" + (" ok" if bool(s) else "")
            for lbl, p, s in zip(self.labels[:shown], pred[:shown], self.success[:shown], strict=True)
        ]
        png = _io.save_grid(self.adversarial[:shown], captions, out / f"{prefix}images.png")
        tensors = {
            "adversarial": self.adversarial.detach().cpu(),
            "success": self.success.cpu(),
            "norms": self.norms.cpu(),
            "labels": self.labels.cpu(),
        }
        if self.target is not None:
            tensors["target"] = self.target.cpu()
        if self.predicted is not None:
            tensors["predicted"] = self.predicted.cpu()
        return {
            "png": png,
            "json": _io.write_json(out / f"{prefix}summary.json", self.summary()),
            "markdown": _io.write_text(
                out / f"{prefix}report.md", self.to_markdown(title) + f"\n![adversarial images]({png.name})\n"
            ),
            "tensors": _io.save_torch(out / f"{prefix}adversarial.pt", tensors),
        }


def _inside_l2_ball(x: torch.Tensor, adv: torch.Tensor, eps: float, lower: float, upper: float) -> torch.Tensor:
    """``adv`` with every image whose exact (float64) L2 distance to ``x`` exceeds ``eps`` moved back inside.

    ``x + delta`` rounds at the pixels' scale (half a unit in the last place, about 8e-6 at 255), so a
    perturbation projected onto the ball can land just outside it. Such an image's perturbation is
    scaled (in float64) onto the sphere and each pixel then moved one unit in the last place towards
    ``x``: no pixel then moves further from ``x`` than the scaled perturbation does, so the norm is <= eps.
    """
    view = (-1, *([1] * (x.dim() - 1)))
    for _ in range(8):  # once is enough; the loop re-checks
        delta = adv.double() - x.double()
        n = delta.flatten(1).norm(dim=1)
        over = n > eps
        if not bool(over.any()):
            break
        inside = (x.double() + delta * (eps / n.clamp_min(1e-300)).view(view)).to(adv.dtype)
        inside = torch.nextafter(inside, x).clamp(lower, upper)
        adv = torch.where(over.view(view), inside, adv)
    return adv


def _concat(results: list[AttackResult]) -> AttackResult:
    """One result from the results of consecutive batches."""
    first = results[0]
    cat = torch.cat
    return AttackResult(
        adversarial=cat([r.adversarial for r in results]),
        success=cat([r.success for r in results]),
        norms=cat([r.norms for r in results]),
        queries=max(r.queries for r in results),
        labels=cat([r.labels for r in results]),
        target=None if first.target is None else cat([r.target for r in results if r.target is not None]),
        eps=first.eps,
        norm=first.norm,
        predicted=None if first.predicted is None else cat([r.predicted for r in results if r.predicted is not None]),
        attack=first.attack,
    )


class Attack(ABC):
    """Base of perturbation attacks: checks inputs, runs :meth:`_run`, clips, re-checks success.

    Call as ``attack(classifier, images, labels, target=None)`` on one batch, or
    ``attack.run_batches(classifier, loader)`` on a stream of ``(images, labels)``
    batches (a ``DataLoader`` or any iterable). The step loops read nothing back
    to the host (no ``.item()``, no data-dependent Python branches) except where
    an attack says so, so they run at the device's pace. The gradient attacks turn autograd on for
    themselves, so they run under the caller's ``torch.no_grad()`` or ``torch.inference_mode()`` too
    (the model itself must not have been built or loaded under inference mode).

    Examples:
        >>> import foolbench as fb
        >>> isinstance(fb.search.PGD(eps=0.1), fb.search.Attack)
        True
    """

    norm: str = "inf"
    eps: float | None = None

    @abstractmethod
    def _run(
        self,
        clf: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        gen: torch.Generator,
        bar: Any,
        guard: _calls.FiniteGuard,
    ) -> tuple[torch.Tensor, int]:
        """Adversarial images (unclipped is fine) and the queries used; ``bar.update(1)`` per step."""

    def _total_steps(self) -> int | None:
        """Length of the progress bar of one call (None: unknown)."""
        return getattr(self, "steps", None)

    def __call__(
        self,
        classifier: Classifier,
        images: torch.Tensor,
        labels: Any,
        *,
        target: Any = None,
        seed: int | torch.Generator | None = 0,
        progress: bool = False,
    ) -> AttackResult:
        """Attack a batch.

        Args:
            classifier: the model (its ``training`` flags are left as found).
            images: (B, C, H, W) raw images inside the classifier's bounds.
            labels: (B,) true class indices.
            target: None (untargeted), an int class, or (B,) target classes that differ from ``labels``.
            seed: seeds the attack's random draws (an int, or a ``torch.Generator`` on the classifier's
                device to continue a stream); the global RNG is never used.
            progress: show a tqdm bar over the attack's steps (off by default: most calls take well
                under a second on small models).

        Returns:
            An :class:`AttackResult`; adversarial images stay inside the bounds and the eps-ball.
            Half-precision images (float16, bfloat16) are attacked, and returned, in float32: rounded
            back to 8 or 11 bits of mantissa they could leave the eps-ball.

        Raises:
            InvalidArgumentError: bad shapes, labels or targets out of range, targets equal to labels,
                images outside the bounds; a gradient attack on a model built under ``torch.inference_mode()``.
            ModelOutputError: the model returned integer logits, or NaN / inf for these finite inputs.
        """
        clf = check_classifier(classifier)
        x = _checks.images("images", images, shape=clf.input_shape, bounds=clf.bounds)
        device = clf.device
        x = _checks.at_least_float32(x.detach().to(device))
        y = _checks.labels("labels", labels, batch=x.shape[0], num_classes=clf.num_classes, device=device)
        t = None
        if target is not None:
            if isinstance(target, int) and not isinstance(target, bool):
                if not 0 <= target < clf.num_classes:
                    raise InvalidArgumentError(
                        f"target must be a class index in [0, {clf.num_classes - 1}], got {target}"
                    )
                target = torch.full_like(y, target)
            t = _checks.labels("target", target, batch=x.shape[0], num_classes=clf.num_classes, device=device)
            if bool((t == y).any()):
                raise InvalidArgumentError(
                    f"target must differ from labels for a targeted attack; they are equal at "
                    f"{torch.nonzero(t == y).flatten()[:5].tolist()}"
                )
        with _calls.gradients(type(self).__name__):  # under the caller's no_grad or inference_mode too
            return self._attack(clf, _calls.usable(x), _calls.usable(y), _calls.usable(t), seed, progress)

    def _attack(
        self,
        clf: BaseClassifier,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor | None,
        seed: int | torch.Generator | None,
        progress: bool,
    ) -> AttackResult:
        """:meth:`__call__` on checked inputs, with autograd on."""
        device = clf.device
        gen = _checks.generator("seed", seed, device=device)
        guard = _calls.FiniteGuard(type(self).__name__)
        with _calls.progress_bar(self._total_steps(), progress, type(self).__name__) as bar:
            adv, queries = self._run(clf, x, y, t, gen, bar, guard)
        guard.check()
        lower, upper = clf.bounds
        if self.eps is not None:
            adv = x + project(adv - x, self.eps, self.norm)
        adv = adv.clamp(lower, upper).detach()
        if self.eps is not None and self.norm == "inf":  # x + delta rounds at the pixels' scale (bounds like 0-255)
            adv = torch.where((adv - x).abs() > self.eps, torch.nextafter(adv, x), adv)
        elif self.eps is not None:
            adv = _inside_l2_ball(x, adv, self.eps, lower, upper)
        if not bool(torch.isfinite(adv).all()):
            raise ModelOutputError(
                f"{type(self).__name__} produced NaN images from finite inputs: the model's gradient is NaN or "
                "infinite (its output is the problem, not the images)"
            )
        pred = clf.log_probs(adv).argmax(1)
        success = pred != y if t is None else pred == t
        return AttackResult(
            adversarial=adv,
            success=success,
            # exact differences, rounded once: a norm computed in float32 could round past eps
            norms=lp_norm(adv.double() - x.double(), self.norm).to(adv.dtype),
            queries=queries + 1,
            labels=y,
            target=t,
            eps=self.eps,
            norm=self.norm,
            predicted=pred,
            attack=repr(self),
        )

    def run_batches(
        self,
        classifier: Classifier,
        batches: Iterable[Any],
        *,
        target: int | None = None,
        seed: int | None = 0,
        progress: bool = False,
    ) -> AttackResult:
        """Attack every batch of a stream and return one result for all its images, in stream order.

        ``batches`` is a ``torch.utils.data.DataLoader`` or any iterable of ``(images, labels)``
        pairs (extra items in each tuple are ignored). One random generator, seeded once by
        ``seed``, runs through the stream, so the same stream and seed give the same result.
        The result holds every adversarial image (on the classifier's device); for streams larger
        than memory, call the attack per batch instead.

        Args:
            classifier: the model.
            batches: iterable of ``(images (B, C, H, W), labels (B,))``.
            target: None (untargeted) or one int class for every image.
            seed: seeds the attack's random draws.
            progress: show a tqdm bar over the batches.

        Returns:
            An :class:`AttackResult` over all images; ``queries`` is the most any batch used per image.

        Raises:
            InvalidTypeError: ``batches`` is not an iterable of (images, labels) pairs.
            InvalidArgumentError: an empty stream, or a bad batch (the message names its index).

        Examples:
            >>> import torch, foolbench as fb
            >>> x, y = fb.models.mnist_digits("test", limit=20)
            >>> loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
            >>> res = fb.search.FGSM(eps=0.3).run_batches(fb.models.lenet_mnist(), loader)
            >>> res.adversarial.shape
            torch.Size([20, 1, 28, 28])
        """
        clf = check_classifier(classifier)
        if target is not None and (isinstance(target, bool) or not isinstance(target, int)):
            raise InvalidTypeError(f"target must be None or one int class for a stream, got {type(target).__name__}")
        gen = _checks.generator("seed", seed, device=getattr(clf, "device", "cpu"))
        results: list[AttackResult] = []
        total = len(batches) if isinstance(batches, Sized) else None
        with _calls.progress_bar(total, progress, f"{type(self).__name__} batches", unit="batch") as bar:
            for i, (xb, yb) in enumerate(_calls.batches("batches", batches, labelled=True)):
                try:
                    results.append(self(clf, xb, yb, target=target, seed=gen))
                except (InvalidArgumentError, InvalidTypeError) as err:
                    raise type(err)(f"batch {i}: {err}") from err
                bar.update(1)
        if not results:
            raise _calls.no_batches("batches")
        return _concat(results)

    def sweep(
        self,
        classifier: Classifier,
        images: torch.Tensor,
        labels: Any,
        eps: Sequence[float],
        *,
        target: Any = None,
        seed: int | None = 0,
        progress: bool = False,
    ) -> list[AttackResult]:
        """Run the attack once per budget in ``eps``; returns the results in the same order."""
        if not isinstance(eps, list | tuple) or not eps:
            raise InvalidArgumentError(
                f"eps must be a non-empty sequence of budgets, got {eps!r} (for one budget, call the attack itself)"
            )
        out = []
        for i, e in enumerate(eps):
            attack = copy.copy(self)
            attack.eps = _checks.real(f"eps[{i}]", e, low=0.0)
            out.append(attack(classifier, images, labels, target=target, seed=seed, progress=progress))
        return out


def _loss_grad(
    clf: Classifier, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None, guard: _calls.FiniteGuard
) -> torch.Tensor:
    """Gradient of the attack objective: ascend CE(y) untargeted, descend CE(target) targeted."""
    x = x.detach().requires_grad_(True)
    logits = _calls.logits(clf, x)
    guard.update(logits)
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

    def _total_steps(self) -> int | None:
        return 1

    def _run(
        self,
        clf: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor | None,
        gen: torch.Generator,
        bar: Any,
        guard: _calls.FiniteGuard,
    ) -> tuple[torch.Tensor, int]:
        assert self.eps is not None
        adv = x + self.eps * _loss_grad(clf, x, y, t, guard).sign()
        bar.update(1)
        return adv, 1


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
        self.random_start = _checks.boolean("random_start", random_start)

    def __repr__(self) -> str:
        return (
            f"PGD(eps={self.eps:g}, steps={self.steps}, step_size={self.step_size}, norm={self.norm!r}, "
            f"random_start={self.random_start})"
        )

    def _run(
        self,
        clf: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor | None,
        gen: torch.Generator,
        bar: Any,
        guard: _calls.FiniteGuard,
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
            g = _loss_grad(clf, adv, y, t, guard)
            if self.norm == "inf":
                step = alpha * g.sign()
            else:
                step = alpha * g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            adv = (x + project(adv + step - x, eps, self.norm)).clamp(lower, upper)
            bar.update(1)
        return adv, self.steps


def deepfool_step(
    clf: Classifier, x: torch.Tensor, candidates: torch.Tensor, norm: str, guard: _calls.FiniteGuard | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One linearised DeepFool step for a batch: the smallest move to the nearest candidate boundary.

    Args:
        clf: the classifier.
        x: (B, C, H, W) current points (inside the bounds).
        candidates: (B, J) class indices; column 0 is the class to leave.
        norm: ``"2"`` or ``"inf"``.
        guard: records non-finite model outputs.

    Returns:
        ``(r, still)``: (B, C, H, W) step (without overshoot) and (B,) bool, whether ``x`` is still
        classified as column 0 (where it is not, ``r`` is not needed).
    """
    x = x.detach().requires_grad_(True)
    logits = _calls.logits(clf, x)
    if guard is not None:
        guard.update(logits)
    still = logits.detach().argmax(1) == candidates[:, 0]
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
    # the 1e-4 nudge past the boundary is on the distance, as in the reference code (r = (d + 1e-4) w / |w|);
    # on the logit gap instead it left the images about 5e-5 in log-probability from the boundary
    wb, step, nb = w[idx, best], dist[idx, best] + 1e-4, wn[idx, best].clamp_min(1e-12)
    shape = (-1, 1, 1, 1)
    if norm == "inf":
        return step.view(shape) * wb.sign(), still
    return (step / nb).view(shape) * wb, still


class DeepFool(Attack):
    """DeepFool (Moosavi-Dezfooli et al. 2016): a small perturbation to the nearest decision boundary.

    The whole batch is linearised at once; each image stops as soon as its label changes.
    Only untargeted. An image the model already misclassifies is left as it is (a success with a zero
    perturbation, as in torchattacks).

    Args:
        steps: at most this many linearisations.
        overshoot: the accumulated step is multiplied by ``1 + overshoot``.
        candidates: how many top classes are considered as boundaries (>= 2).
        norm: ``"2"`` or ``"inf"``.
        check_every: read back, every this many steps, whether any image is left (and drop the
            finished ones); in between the loop never waits for the device.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> x, y = fb.models.mnist_digits("test", limit=8)
        >>> fb.search.DeepFool(steps=50)(clf, x, y).success_rate
        1.0
    """

    def __init__(
        self,
        steps: int = 50,
        overshoot: float = 0.02,
        candidates: int = 10,
        *,
        norm: str = "2",
        check_every: int = 4,
    ) -> None:
        self.steps = _checks.positive_int("steps", steps)
        self.check_every = _checks.positive_int("check_every", check_every)
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
        self,
        classifier: Classifier,
        images: torch.Tensor,
        labels: Any,
        *,
        target: Any = None,
        seed: int | torch.Generator | None = 0,
        progress: bool = False,
    ) -> AttackResult:
        if target is not None:
            raise InvalidArgumentError("DeepFool is untargeted: target must be None")
        return super().__call__(classifier, images, labels, seed=seed, progress=progress)

    def perturb(
        self,
        clf: Classifier,
        x: torch.Tensor,
        start: torch.Tensor | None = None,
        *,
        keep: torch.Tensor | None = None,
        bar: Any = None,
        guard: _calls.FiniteGuard | None = None,
    ) -> tuple[torch.Tensor, int]:
        """Minimal perturbations (B, C, H, W) that change each image's current prediction, and steps used.

        The step loop reads nothing back to the host except every ``check_every`` steps, where it
        stops once every image has left its class and drops the finished images from the batch.
        An image is updated only while it keeps its class, so when the checks run changes its result
        only by the rounding of the model's batched arithmetic (the batch shrinks at other steps), far
        less than the 1e-4 nudge that takes each step past the boundary: on 256 MNIST digits and the
        shipped LeNet, ``check_every`` from 1 to 100 gave the same successes, in both norms.

        Args:
            clf: the classifier.
            x: (B, C, H, W) images inside the bounds.
            start: optional initial perturbation added to ``x``.
            keep: optional (B,) classes; only images whose current prediction is this class are
                perturbed (the others get a zero perturbation). Used by universal perturbations.
            bar: a progress bar to advance once per step.
            guard: records non-finite model outputs.
        """
        with _calls.gradients("DeepFool"):  # under the caller's no_grad or inference_mode too
            u = _calls.usable
            return self._perturb(clf, u(x), u(start), keep=u(keep), bar=bar, guard=guard)

    def _perturb(
        self,
        clf: Classifier,
        x: torch.Tensor,
        start: torch.Tensor | None,
        *,
        keep: torch.Tensor | None,
        bar: Any,
        guard: _calls.FiniteGuard | None,
    ) -> tuple[torch.Tensor, int]:
        lower, upper = clf.bounds
        base = x if start is None else (x + start).clamp(lower, upper)
        with torch.no_grad():
            first = _calls.logits(clf, base)
        if guard is not None:
            guard.update(first)
        k = min(self.candidates, first.shape[1])
        cand = first.topk(k, dim=1).indices
        allowed = None if keep is None else cand[:, 0] == keep
        r_tot = torch.zeros_like(x)
        idx: torch.Tensor | None = None  # working rows (None: all)
        still = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        used = 0
        scale = 1 + self.overshoot
        for step in range(self.steps):
            if step and step % self.check_every == 0:
                left = int(still.sum())  # the only host read, every check_every steps
                if left == 0:
                    break
                if left < still.shape[0]:
                    rows = torch.nonzero(still).flatten()
                    idx = rows if idx is None else idx[rows]
            if idx is None:
                cur = (base + scale * r_tot).clamp(lower, upper)
                r, still = deepfool_step(clf, cur, cand, self.norm, guard)
                if allowed is not None:
                    still = still & allowed
                r_tot = torch.where(still.view(-1, 1, 1, 1), r_tot + r, r_tot)
            else:
                cur = (base[idx] + scale * r_tot[idx]).clamp(lower, upper)
                r, still = deepfool_step(clf, cur, cand[idx], self.norm, guard)
                if allowed is not None:
                    still = still & allowed[idx]
                r_tot[idx] = torch.where(still.view(-1, 1, 1, 1), r_tot[idx] + r, r_tot[idx])
            used += 1
            if bar is not None:
                bar.update(1)
        adv = (base + scale * r_tot).clamp(lower, upper)
        return adv - x, used

    def _run(
        self,
        clf: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor | None,
        gen: torch.Generator,
        bar: Any,
        guard: _calls.FiniteGuard,
    ) -> tuple[torch.Tensor, int]:
        # only images the model still gives their label are pushed: one already misclassified is a success as it
        # is, where pushing it off its (wrong) prediction would often land it on its label
        r, used = self.perturb(clf, x, keep=y, bar=bar, guard=guard)
        # the first forward pass (the candidates), then a forward and k gradients per step
        return x + r, 1 + used * (min(self.candidates, clf.num_classes) + 1)
