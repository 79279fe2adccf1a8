"""Universal adversarial perturbations (Moosavi-Dezfooli et al. 2017), batched."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from foolbench import _checks, _io
from foolbench.errors import InvalidArgumentError, ModelOutputError
from foolbench.models import BaseClassifier, Classifier, check_classifier
from foolbench.search import _calls
from foolbench.search._attacks import DeepFool, project

__all__ = ["UAPResult", "UniversalPerturbation", "fooling_rate", "transfer_matrix"]


def _apply(clf: Classifier, images: torch.Tensor, perturbation: torch.Tensor) -> torch.Tensor:
    lower, upper = clf.bounds
    return (images + perturbation.to(images)).clamp(lower, upper)


@torch.no_grad()
def fooling_rate(
    classifier: Classifier, images: torch.Tensor | Iterable[Any], perturbation: torch.Tensor, *, progress: bool = False
) -> float:
    """Share of images whose predicted class changes when ``perturbation`` is added (then clipped to bounds).

    This is the fooling rate of Moosavi-Dezfooli et al. (2017): it compares the
    prediction on the perturbed image with the prediction on the clean one, so it
    needs no labels.

    Args:
        classifier: the model.
        images: a (B, C, H, W) batch, or an iterable of batches (a ``DataLoader``): each item a
            tensor of images or an ``(images, labels)`` pair (the labels are not used).
        perturbation: the perturbation to add to every image.
        progress: show a tqdm bar over the batches (off by default).

    Returns:
        The fooling rate over all images, in [0, 1].

    Raises:
        InvalidArgumentError: a bad perturbation or batch (the message names the batch's index).
        InvalidTypeError: ``images`` is neither a tensor nor an iterable of batches.

    Shape:
        - images: (B, C, H, W)
        - perturbation: (C, H, W) or (1, C, H, W)

    Examples:
        >>> import torch, foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> x, _ = fb.models.mnist_digits("test", limit=50)
        >>> fb.search.fooling_rate(clf, x, torch.zeros(1, 28, 28))
        0.0
        >>> loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=16)
        >>> fb.search.fooling_rate(clf, loader, torch.zeros(1, 28, 28))
        0.0
    """
    clf = check_classifier(classifier)
    v = _perturbation(clf, perturbation)
    if isinstance(images, torch.Tensor):
        stream: Iterable[tuple[torch.Tensor, Any]] = [(images, None)]
        name = "images"
        total: int | None = 1
    else:
        stream = _calls.batches("images", images, labelled=False)
        name = "images batch {}"
        total = len(images) if isinstance(images, Sized) else None
    fooled = torch.zeros((), dtype=torch.long)
    count = 0
    with _calls.progress_bar(total, progress, "fooling rate", unit="batch") as bar:
        for i, (xb, _) in enumerate(stream):
            x = _checks.at_least_float32(_checks.images(name.format(i), xb, shape=clf.input_shape, bounds=clf.bounds))
            clean = clf.log_probs(x).argmax(1)
            moved = clf.log_probs(_apply(clf, x.to(clean.device), v.to(clean.device))).argmax(1) != clean
            fooled = fooled.to(moved.device) + moved.sum()
            count += x.shape[0]
            bar.update(1)
    if count == 0:
        raise _calls.no_batches("images")
    return float(fooled) / count


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
    settings: str = ""

    def __repr__(self) -> str:
        return (
            f"UAPResult(method={self.method!r}, eps={self.eps:g}, norm={self.norm!r}, "
            f"shape={tuple(self.perturbation.shape)}, fooling_rate={self.fooling_rate:.4f}, passes={self.passes}, "
            f"seconds={self.seconds:.2f})"
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary: settings, fooling rate per pass, size of the perturbation."""
        v = self.perturbation.detach().double()
        return {
            "method": "universal_perturbation",
            "variant": self.method,
            "settings": self.settings,
            "eps": self.eps,
            "norm": self.norm,
            "fooling_rate": self.fooling_rate,
            "history": list(self.history),
            "passes": self.passes,
            "seconds": round(self.seconds, 3),
            "linf": float(v.abs().max()),
            "l2": float(v.norm()),
        }

    def to_markdown(self, title: str = "Universal perturbation") -> str:
        """A short Markdown report."""
        return (
            f"# {title}\n\nMethod: `{self.settings or self.method}`; eps {self.eps:g} (L{self.norm}); "
            f"{self.passes} passes in {self.seconds:.1f} s; fooling rate on the fitting images "
            f"{100 * self.fooling_rate:.1f}% (per pass: {', '.join(f'{100 * r:.1f}%' for r in self.history)}).\n"
        )

    def save(self, out_dir: str | Path, *, prefix: str = "", title: str = "Universal perturbation") -> dict[str, Path]:
        """Write the perturbation's picture, summary, report and tensor to ``out_dir``, each atomically.

        The files:

        - ``{prefix}perturbation.png``: the perturbation with 0 as mid gray. For ``norm="inf"`` black is
          ``-eps`` and white ``+eps``, so pictures of one eps compare across fits (a perturbation that
          stays inside the ball looks faint); for ``norm="2"``, whose pixels lie far inside ``+-eps``,
          black and white are ``-max|v|`` and ``+max|v|``.
        - ``{prefix}summary.json``: :meth:`summary`.
        - ``{prefix}report.md``: :meth:`to_markdown` and the picture.
        - ``{prefix}perturbation.pt``: ``{"perturbation": v, "eps": ..., "norm": ..., "method": ...}``,
          ``v`` on the CPU in its own dtype (a float64 fit reloads exactly), as ``foolbench uap`` saves it.

        Args:
            out_dir: the folder (created when missing).
            prefix: put before every file name.
            title: heading of the report.

        Returns:
            The paths, by kind: ``"png"``, ``"json"``, ``"markdown"``, ``"tensors"``.
        """
        out = Path(out_dir)
        v = self.perturbation.detach().cpu()
        shown = v.double()
        scale = self.eps if self.norm == "inf" else float(shown.abs().max())
        gray = ((shown / max(scale, 1e-12)).clamp(-1, 1) + 1) / 2  # clamped: rounding past eps stays white
        png = _io.save_grid(gray.float()[None], [f"{self.method} eps={self.eps:g}"], out / f"{prefix}perturbation.png")
        tensors = {"perturbation": v, "eps": self.eps, "norm": self.norm, "method": self.method}
        return {
            "png": png,
            "json": _io.write_json(out / f"{prefix}summary.json", self.summary()),
            "markdown": _io.write_text(
                out / f"{prefix}report.md", self.to_markdown(title) + f"\n![perturbation]({png.name})\n"
            ),
            "tensors": _io.save_torch(out / f"{prefix}perturbation.pt", tensors),
        }


class UniversalPerturbation:
    """One perturbation that fools most inputs (Moosavi-Dezfooli et al., CVPR 2017).

    ``method="deepfool"`` is the original algorithm, batched: in each mini-batch, the
    images the current perturbation ``v`` does not fool yet get their minimal
    DeepFool perturbation from ``x + v`` (all at once), these are summed into ``v``
    (the batched form of the paper's one-image-at-a-time updates), and ``v`` is
    projected back onto the eps-ball; passes continue until the fooling rate on the
    fitting set reaches ``1 - delta`` or ``max_passes``.
    ``method="sgd"`` (the default) is the stochastic variant (Shafahi et al. 2020):
    projected sign-gradient ascent of the clamped cross-entropy of the clean
    predictions over mini-batches. It is the default because it is the one that
    works: on a tanh CNN no default was tuned on (``benchmarks/bench_uap.py``, eps 0.3
    L-inf, 500 fitting digits), it fools far more held-out digits than the DeepFool
    variant, in less time; the DeepFool variant stays for comparison with the paper.

    Args:
        eps: radius of the perturbation in raw input units.
        norm: ``"inf"`` or ``"2"``.
        method: ``"sgd"`` (default) or ``"deepfool"``.
        delta: stop once the fooling rate reaches ``1 - delta``.
        max_passes: passes (epochs) over the fitting images (20; the DeepFool variant
            was used with 5 before 0.2).
        batch_size: mini-batch size (32; 128 for the DeepFool variant before 0.2).
        step_size: sgd step (default ``eps / 10``).
        deepfool_steps: linearisations per DeepFool call, an int >= 1.
        overshoot: DeepFool overshoot, a number >= 0.
        seed: seeds the shuffling, an int in [0, 2**64) or None (a fresh seed each fit); the global RNG
            is never used.

    Raises:
        InvalidArgumentError: a bad setting (the message names it).
        InvalidTypeError: a setting of the wrong type, such as a string seed (the message names it).

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
        method: str = "sgd",
        delta: float = 0.2,
        max_passes: int = 20,
        batch_size: int = 32,
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
        deepfool_steps = _checks.positive_int("deepfool_steps", deepfool_steps)
        overshoot = _checks.real("overshoot", overshoot, low=0.0)
        self.deepfool = DeepFool(steps=deepfool_steps, overshoot=overshoot, norm=self.norm)
        self.seed = None if seed is None else _checks.seed_int("seed", seed)

    def __repr__(self) -> str:
        return self._text(_io.exact_number)  # exact: 8/255 and 0.0313725 are other settings

    def _text(self, num: Callable[[float], str]) -> str:
        """Every setting as text, each number written by ``num`` (AdversarialFineTuning keys its checkpoints on it)."""
        return (
            f"UniversalPerturbation(eps={num(self.eps)}, norm={self.norm!r}, method={self.method!r}, "
            f"delta={num(self.delta)}, max_passes={self.max_passes}, batch_size={self.batch_size}, seed={self.seed}, "
            f"step_size={num(self.step_size)}, deepfool_steps={self.deepfool.steps}, "
            f"overshoot={num(self.deepfool.overshoot)})"
        )

    def fit(self, classifier: Classifier, images: torch.Tensor, *, progress: bool = False) -> UAPResult:
        """Fit a universal perturbation on ``images``; labels are the clean predictions.

        The ``sgd`` method's mini-batch updates read nothing back to the host; the ``deepfool``
        method's read one count every ``deepfool.check_every`` DeepFool steps
        (:meth:`~foolbench.search.DeepFool.perturb` stops once every image has left its class). The
        fooling rate on the fitting images is read once per pass (it decides whether to stop).

        Args:
            classifier: the model.
            images: (B, C, H, W) fitting images inside the bounds.
            progress: show a tqdm bar over the mini-batches of all passes (off by default).

        Returns:
            A :class:`UAPResult`.

        Raises:
            InvalidArgumentError: bad images.
            ModelOutputError: the model returned integer logits, or NaN / inf for finite inputs.
        """
        clf = check_classifier(classifier)
        x = _checks.images("images", images, shape=clf.input_shape, bounds=clf.bounds)
        device = clf.device
        x = _checks.at_least_float32(x.detach().to(device))  # the perturbation is float32 for half images
        with _calls.gradients("UniversalPerturbation"):  # under the caller's no_grad or inference_mode too
            return self._fit(clf, _calls.usable(x), progress)

    def _fit(self, clf: BaseClassifier, x: torch.Tensor, progress: bool) -> UAPResult:
        device = clf.device
        gen = _checks.generator("seed", self.seed, device="cpu")
        t0 = time.perf_counter()
        clean = clf.log_probs(x).argmax(1)
        v = torch.zeros(clf.input_shape, device=device, dtype=x.dtype)
        history: list[float] = []
        rate = 0.0
        passes = 0
        guard = _calls.FiniteGuard(f"the universal perturbation fit ({self.method})")
        update = self._deepfool_update if self.method == "deepfool" else self._sgd_update
        per_pass = -(-x.shape[0] // self.batch_size)
        with _calls.progress_bar(self.max_passes * per_pass, progress, "UAP fit", unit="batch") as bar:
            for passes in range(1, self.max_passes + 1):  # noqa: B007 - passes is reported
                order = torch.randperm(x.shape[0], generator=gen).to(device)
                for idx in torch.split(order, self.batch_size):
                    v = update(clf, x[idx], clean[idx], v, guard)
                    bar.update(1)
                guard.check()
                if not bool(torch.isfinite(v).all()):
                    raise ModelOutputError(
                        "the universal perturbation became NaN from finite images: the model's gradient is NaN "
                        "or infinite (its output is the problem, not the images)"
                    )
                with torch.no_grad():
                    rate = float((clf.log_probs(_apply(clf, x, v)).argmax(1) != clean).float().mean())
                history.append(rate)
                bar.set_postfix(fooling=f"{rate:.3f}")
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
            settings=repr(self),
        )

    def _deepfool_update(
        self, clf: Classifier, xb: torch.Tensor, yb: torch.Tensor, v: torch.Tensor, guard: _calls.FiniteGuard
    ) -> torch.Tensor:
        # Only the images v does not fool yet (still classified as their clean class) are perturbed.
        r, _ = self.deepfool.perturb(clf, _apply(clf, xb, v), keep=yb, guard=guard)
        return project(v + r.sum(0), self.eps, self.norm)

    def _sgd_update(
        self, clf: Classifier, xb: torch.Tensor, yb: torch.Tensor, v: torch.Tensor, guard: _calls.FiniteGuard
    ) -> torch.Tensor:
        v = v.detach().requires_grad_(True)
        logits = _calls.logits(clf, _apply(clf, xb, v))
        guard.update(logits)
        loss = F.cross_entropy(logits, yb, reduction="none").clamp(max=10.0).mean()
        (g,) = torch.autograd.grad(loss, v)
        if self.norm == "inf":
            step = self.step_size * g.sign()
        else:
            step = self.step_size * g / g.norm().clamp_min(1e-12)
        return project((v + step).detach(), self.eps, self.norm)
