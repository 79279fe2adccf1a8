"""Gradient-ascent fooling images and unit visualisation (white box)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from foolbench import _checks
from foolbench._filters import gaussian_blur
from foolbench.errors import InvalidArgumentError
from foolbench.models import Classifier, check_classifier
from foolbench.search import _calls
from foolbench.search._result import FoolingResult, History

__all__ = ["GradientAscent", "UnitVisualization"]


@dataclass(frozen=True)
class UnitVisualization:
    """Images that maximise internal units.

    Attributes:
        images: (U, C, H, W) one image per unit.
        activation: (U,) mean activation of each unit's channel on its image.
        layer: the module name.
        channels: (U,) channel indices.

    Examples:
        >>> import foolbench as fb
        >>> vis = fb.search.GradientAscent(fb.models.lenet_mnist(), steps=3).visualize("conv1", [0, 1])
        >>> vis.images.shape, vis.layer
        (torch.Size([2, 1, 28, 28]), 'conv1')
    """

    images: torch.Tensor
    activation: torch.Tensor
    layer: str
    channels: tuple[int, ...]


@dataclass
class _Ascent:
    """What :meth:`GradientAscent._optimise` returns.

    Attributes:
        images: (K, C, H, W) the images kept.
        final: (K,) their scores.
        evaluations: the running evaluation count at each record of ``history``.
        history: (K,) scores of the images kept, after the start, each step and at the end (the last is ``final``).
        found_at: (K,) the evaluation count when each image was scored as it is returned (it changed no more).
        used: images evaluated in all (forward-backward and forward-only passes alike).
    """

    images: torch.Tensor
    final: torch.Tensor
    evaluations: list[int]
    history: list[torch.Tensor]
    found_at: torch.Tensor
    used: int


class GradientAscent:
    """Fooling images by gradient ascent from noise (white box; Nguyen et al. 2015, Simonyan et al. 2014).

    One image per target class is optimised, all in one batch: each step moves the
    images along the normalised gradient of the log-probability of their class,
    then (optionally) decays them towards the middle of the bounds (L2 decay),
    blurs them every ``blur_every`` steps and clips them to the bounds. Random
    ``jitter`` shifts the image before each gradient. With the regularisers off
    (the default) the images are the paper's unrecognisable ones; with them on,
    they look more like the class (Yosinski et al. 2015). An image stops changing
    once it reaches ``target_confidence``.

    Args:
        classifier: a differentiable classifier.
        steps: most gradient steps.
        lr: step size (mean absolute change per pixel, relative to the bounds' width).
        l2_decay: per-step shrink towards the middle of the bounds, in [0, 1).
        blur_every: blur every this many steps (0: never).
        blur_sigma: Gaussian blur sigma in pixels.
        jitter: largest random shift in pixels before each gradient (0: none).
        start: ``"noise"``, ``"zeros"`` (the middle grey) or a (K, C, H, W) tensor of start images.
        seed: seeds the noise and jitter.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> res = fb.search.GradientAscent(clf, steps=100, seed=0).run(classes=[0, 1, 2])
        >>> bool(res.fooled(0.9999).all())
        True
    """

    def __init__(
        self,
        classifier: Classifier,
        *,
        steps: int = 500,
        lr: float = 0.01,
        l2_decay: float = 0.0,
        blur_every: int = 0,
        blur_sigma: float = 0.5,
        jitter: int = 0,
        start: Any = "noise",
        seed: int | None = 0,
    ) -> None:
        self.classifier = check_classifier(classifier)
        self.steps = _checks.positive_int("steps", steps)
        self.lr = _checks.real("lr", lr, low=0.0, low_open=True)
        self.l2_decay = _checks.real("l2_decay", l2_decay, low=0.0, high=1.0, high_open=True)
        self.blur_every = _checks.positive_int("blur_every", blur_every, minimum=0)
        self.blur_sigma = _checks.real("blur_sigma", blur_sigma, low=0.0)
        self.jitter = _checks.positive_int("jitter", jitter, minimum=0)
        if isinstance(start, str):
            _checks.choice("start", start, ("noise", "zeros"))
        elif isinstance(start, torch.Tensor):
            _checks.images("start", start, shape=self.classifier.input_shape, bounds=self.classifier.bounds)
        else:
            raise InvalidArgumentError(f"start must be 'noise', 'zeros' or a tensor of images, got {start!r}")
        self.start = start
        self.seed = seed

    def __repr__(self) -> str:
        start = self.start if isinstance(self.start, str) else f"tensor{tuple(self.start.shape)}"
        return (
            f"GradientAscent(steps={self.steps}, lr={self.lr:g}, l2_decay={self.l2_decay:g}, "
            f"blur_every={self.blur_every}, blur_sigma={self.blur_sigma:g}, jitter={self.jitter}, "
            f"start={start!r}, seed={self.seed})"
        )

    def _init(self, n: int, gen: torch.Generator, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        lower, upper = self.classifier.bounds
        shape = (n, *self.classifier.input_shape)
        if isinstance(self.start, torch.Tensor):
            if self.start.shape[0] != n:
                raise InvalidArgumentError(f"start must hold one image per target ({n}), got {self.start.shape[0]}")
            return self.start.detach().to(device=device, dtype=dtype).clone()
        if self.start == "zeros":
            return torch.full(shape, (lower + upper) / 2, device=device, dtype=dtype)
        noise = torch.rand(shape, generator=gen, device=gen.device).to(device=device, dtype=dtype)
        return lower + (upper - lower) * noise

    def _optimise(
        self,
        objective: Any,
        n: int,
        target_log: float | None,
        progress: bool = False,
        what: str = "gradient ascent",
        record: bool = False,
    ) -> _Ascent:
        device, dtype = self.classifier.device, self.classifier.dtype
        gen = _checks.generator("seed", self.seed, device=device)
        lower, upper = self.classifier.bounds
        mid, width = (lower + upper) / 2, upper - lower
        x = self._init(n, gen, device, dtype)
        active = torch.ones(n, dtype=torch.bool, device=device)
        out = _Ascent(x, torch.empty(0), [], [], torch.zeros(n, dtype=torch.long, device=device), 0)
        changed = torch.ones(n, dtype=torch.bool, device=device)  # images not scored since they last changed

        def kept(scores: torch.Tensor) -> None:
            """Record the scores of the images as they stand (the unshifted ones), after their pass is counted."""
            nonlocal changed
            out.evaluations.append(out.used)
            out.history.append(scores)
            out.found_at = torch.where(changed, out.used, out.found_at)
            changed = torch.zeros_like(changed)

        guard = _calls.FiniteGuard(what)
        bar = _calls.progress_bar(self.steps, progress, "gradient ascent")
        stopped = False
        for step in range(self.steps):
            xin = x.detach().requires_grad_(True)
            shifted = xin
            dy = dx = 0
            if self.jitter:
                dy, dx = (
                    int(v) for v in torch.randint(-self.jitter, self.jitter + 1, (2,), generator=gen, device=gen.device)
                )
                shifted = torch.roll(xin, shifts=(dy, dx), dims=(2, 3))
            score = objective(shifted)
            guard.update(score)
            out.used += n
            (g,) = torch.autograd.grad(score.sum(), xin)
            bar.update(1)
            current: torch.Tensor | None = score.detach()
            if dy or dx:  # the image kept is the unshifted one: it is scored (where needed) and decides when to stop
                current = None
                if record or target_log is not None:
                    with torch.no_grad():
                        current = objective(x)
                    guard.update(current)
                    out.used += n
            if current is not None:
                kept(current)
            if target_log is not None:
                assert current is not None
                active = current < target_log
                if not bool(active.any()):
                    stopped = True
                    out.final = current
                    break
            g = g / g.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1, 1)
            new = x + self.lr * width * g
            if self.l2_decay:
                new = mid + (new - mid) * (1 - self.l2_decay)
            if self.blur_every and (step + 1) % self.blur_every == 0:
                new = gaussian_blur(new, self.blur_sigma)
            new = new.clamp(lower, upper)
            x = torch.where(active.view(-1, 1, 1, 1), new, x).detach()
            changed = changed | active
        bar.close()
        if not stopped:  # the images changed after their last score: the result's pass, recorded too
            with torch.no_grad():
                out.final = objective(x)
            guard.update(out.final)
            out.used += n
            kept(out.final)
        guard.check()
        out.images = x
        return out

    def run(
        self, classes: Any = None, *, target_confidence: float | None = 0.9999, progress: bool = False
    ) -> FoolingResult:
        """Optimise one image per class in ``classes`` (default: all) until ``target_confidence`` or ``steps``.

        Args:
            classes: class indices (default: every class).
            target_confidence: an image stops changing once its class reaches this confidence
                (None: run every step).
            progress: show a tqdm bar over the steps (off by default).

        Returns:
            A :class:`FoolingResult` (same plotting and saving as evolution); ``evaluations``
            counts the images passed through the model: one per class in each step's forward-backward
            pass, in the forward pass that scores the unshifted images where ``jitter`` shifted them,
            and in the pass that scores the images returned (where a step changed them after their
            last score). The history has a row for each score of the images as they stand (the
            noise, then after each step), at the evaluations counted so far; its last row holds the
            returned images' scores. ``found_at`` is the count when each image was scored as it is
            returned: when it reached ``target_confidence`` and stopped changing, or at the end.
            Its ``confidence`` is the float32 :meth:`~foolbench.models.BaseClassifier.reference`'s,
            as a search reports (one more pass where the classifier runs in bf16, compiled or
            folded); ``target_confidence`` and the history use the classifier's own scores.

        Raises:
            InvalidArgumentError: unknown classes or a target outside (0, 1].
            ModelOutputError: the model returned integer logits, or NaN / inf for these finite images.
        """
        k = self.classifier.num_classes
        chosen = list(range(k)) if classes is None else _checks.class_list("classes", classes, num_classes=k)
        target_log = None
        if target_confidence is not None:
            target_log = math.log(
                _checks.real("target_confidence", target_confidence, low=0.0, high=1.0, low_open=True)
            )
        with _calls.gradients("GradientAscent"):  # under the caller's no_grad or inference_mode too
            return self._run(chosen, target_log, progress)

    def _run(self, chosen: list[int], target_log: float | None, progress: bool) -> FoolingResult:
        cls = torch.tensor(chosen, device=self.classifier.device)

        def objective(x: torch.Tensor, clf: Classifier = self.classifier) -> torch.Tensor:
            return F.log_softmax(_calls.logits(clf, x).float(), dim=1).gather(1, cls[:, None])[:, 0]

        t0 = time.perf_counter()
        out = self._optimise(objective, len(chosen), target_log, progress, record=True)
        x, final = out.images, out.final
        reference = self.classifier.reference()
        if reference is not self.classifier:  # bf16, compiled or folded: report the float32 twin's scores
            with torch.no_grad():
                final = objective(x, reference)
        names = self.classifier.class_names
        return FoolingResult(
            images=x,
            confidence=final.double().exp().cpu(),
            classes=cls.cpu(),
            evaluations=out.used,
            seconds=time.perf_counter() - t0,
            history=History(
                torch.tensor(out.evaluations, dtype=torch.long), torch.stack(out.history).double().exp().cpu()
            ),
            class_names=tuple(names[c] for c in chosen),
            method="gradient_ascent",
            found_at=out.found_at.cpu(),
            settings={"repr": repr(self)},
        )

    def visualize(self, layer: str, channels: Any, *, progress: bool = False) -> UnitVisualization:
        """Images that maximise the mean activation of ``channels`` of the submodule ``layer``.

        ``layer`` is a name from ``classifier.layers()`` (the wrapped network's submodules)
        such as ``"conv2"``.

        Raises:
            InvalidArgumentError: unknown layer or channel.
        """
        names = self.classifier.layers()
        if layer not in names or not layer:
            raise InvalidArgumentError(
                f"layer must name a submodule, one of {sorted(n for n in names if n)}; got {layer!r}"
            )
        chans = [channels] if isinstance(channels, int) and not isinstance(channels, bool) else channels
        if (
            not isinstance(chans, list | tuple)
            or not chans
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in chans)
        ):
            raise InvalidArgumentError(
                f"channels must be a channel index or a non-empty list of them, got {channels!r}"
            )
        with _calls.gradients(f"visualize({layer!r})"):  # under the caller's no_grad or inference_mode too
            return self._visualize(names[layer], layer, list(chans), progress)

    def _visualize(self, module: torch.nn.Module, layer: str, chans: list[int], progress: bool) -> UnitVisualization:
        captured: dict[str, torch.Tensor] = {}
        handle = module.register_forward_hook(lambda m, i, o: captured.__setitem__("out", o))
        idx = torch.tensor(chans)

        # through the plain float32 module the hook is on: a folded or compiled copy runs without it
        plain = self.classifier.reference()

        def objective(x: torch.Tensor) -> torch.Tensor:
            captured.pop("out", None)
            plain(x)
            if "out" not in captured:
                raise InvalidArgumentError(
                    f"layer {layer!r} did not run in the classifier's forward pass, so it has no activation to maximise"
                )
            out = captured["out"]
            if out.dim() < 2 or int(idx.max()) >= out.shape[1] or int(idx.min()) < 0:
                raise InvalidArgumentError(
                    f"channels must be in [0, {out.shape[1] - 1}] for layer {layer!r}, got {chans}"
                )
            sel = out.gather(1, idx.to(out.device).view(-1, *([1] * (out.dim() - 1))).expand(-1, 1, *out.shape[2:]))
            return sel.flatten(1).mean(1)

        try:
            out = self._optimise(objective, len(chans), None, progress, f"visualize({layer!r})")
        finally:
            handle.remove()
        return UnitVisualization(
            images=out.images, activation=out.final.detach().cpu(), layer=layer, channels=tuple(chans)
        )
