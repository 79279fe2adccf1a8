"""Square Attack (Andriushchenko et al., ECCV 2020): score-based, gradient-free, L-inf, batched."""

from __future__ import annotations

import math
from typing import Any

import torch

from foolbench import _checks
from foolbench.models import Classifier
from foolbench.search import _calls
from foolbench.search._attacks import Attack

__all__ = ["SquareAttack"]

# Iterations (out of the paper's 10,000) after which the square's area halves.
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def _margin(logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
    """(B,) margin, negative once the attack has succeeded.

    Untargeted: ``z_y - max_{j != y} z_j``; targeted: ``max_{j != t} z_j - z_t``.
    """
    cls = y if t is None else t
    own = logits.gather(1, cls[:, None])[:, 0]
    other = logits.scatter(1, cls[:, None], -torch.inf).amax(1)
    return own - other if t is None else other - own


def square_fraction(p_init: float, step: int, steps: int) -> float:
    """Share of the image's pixels the square covers at ``step`` of ``steps`` (the paper's schedule).

    The schedule is defined for 10,000 iterations and rescaled to ``steps``: the area starts at
    ``p_init`` and halves at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000.

    Examples:
        >>> square_fraction(0.8, 0, 10_000), square_fraction(0.8, 60, 10_000), square_fraction(0.8, 60, 1000)
        (0.8, 0.2, 0.05)
    """
    it = int(step / steps * 10_000)
    halvings = sum(1 for h in _HALVINGS if it > h)
    return float(p_init / 2**halvings)


class SquareAttack(Attack):
    """Square Attack (Andriushchenko et al., ECCV 2020): random square updates accepted when the margin drops.

    A score-based, gradient-free L-inf attack: it reads only the classifier's scores,
    so gradient masking (non-differentiable or shattered-gradient defenses) does not
    stop it. It starts from vertical stripes of ``+-eps``; at each iteration every image
    still correctly classified (or not yet at its target) gets a square window, at a
    random position, set to ``+-eps`` per channel (the window's side follows the
    paper's schedule, starting from ``p_init`` of the image's area) and keeps the
    change if the margin loss ``z_y - max_{j != y} z_j`` (targeted:
    ``max_{j != t} z_j - z_t``) goes down. The whole batch moves together: one forward
    pass per iteration for the images still running.

    Random draws come only from the attack's generator (the ``seed`` of the call).
    Every ``check_every`` iterations the finished images are dropped from the batch
    (one read back to the host). The draws are made for the whole batch, so an image's
    result depends on the seed and on its batch (its size and the image's position in it).

    Args:
        eps: L-inf budget in raw input units.
        queries: most iterations (one forward pass per image each, after the first).
        p_init: initial share of the image's area covered by the square, in (0, 1]; the paper uses 0.8
            on MNIST (the default) and 0.05 on CIFAR-10 and ImageNet.
        check_every: iterations between reads of which images are done.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> x, y = fb.models.mnist_digits("test", limit=16)
        >>> res = fb.search.SquareAttack(eps=0.3, queries=300)(clf, x, y, seed=0)
        >>> res.success_rate > 0.5, bool(res.norms.max() <= 0.3 + 1e-6)
        (True, True)
    """

    def __init__(self, eps: float, queries: int = 1000, *, p_init: float = 0.8, check_every: int = 10) -> None:
        self.eps = _checks.real("eps", eps, low=0.0)
        self.queries = _checks.positive_int("queries", queries)
        self.p_init = _checks.real("p_init", p_init, low=0.0, high=1.0, low_open=True)
        self.check_every = _checks.positive_int("check_every", check_every)
        self.norm = "inf"

    def __repr__(self) -> str:
        return f"SquareAttack(eps={self.eps:g}, queries={self.queries}, p_init={self.p_init:g})"

    def _total_steps(self) -> int | None:
        return self.queries

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
        lower, upper = clf.bounds
        b, c, h, w = x.shape
        dev = gen.device

        def draw_signs(shape: tuple[int, ...]) -> torch.Tensor:
            return (torch.randint(0, 2, shape, generator=gen, device=dev) * 2 - 1).to(x)

        # Vertical stripes: one +-eps per (image, channel, column).
        adv = (x + eps * draw_signs((b, c, 1, w))).clamp(lower, upper)
        with torch.no_grad():
            out = _calls.logits(clf, adv)
        guard.update(out)
        margin = _margin(out.float(), y, t)
        rows_h = torch.arange(h, device=x.device)
        rows_w = torch.arange(w, device=x.device)
        idx: torch.Tensor | None = None  # rows still running (None: all)
        used = 1  # the stripes' forward pass
        for step in range(self.queries):
            if step and step % self.check_every == 0:
                running = margin > 0
                left = int(running.sum())  # one host read every check_every iterations
                if left == 0:
                    break
                if left < margin.shape[0]:
                    keep = torch.nonzero(running).flatten()
                    idx = keep if idx is None else idx[keep]
                    margin = margin[keep]
            side = max(1, min(h - 1, w - 1, round(math.sqrt(square_fraction(self.p_init, step, self.queries) * h * w))))
            # Every image's draws are made for the full batch so they do not depend on the others.
            top = torch.randint(0, h - side + 1, (b,), generator=gen, device=dev).to(x.device)
            left_ = torch.randint(0, w - side + 1, (b,), generator=gen, device=dev).to(x.device)
            signs = draw_signs((b, c, 1, 1))
            if idx is not None:
                top, left_, signs = top[idx], left_[idx], signs[idx]
            xs = x if idx is None else x[idx]
            cur = adv if idx is None else adv[idx]
            in_h = (rows_h >= top[:, None]) & (rows_h < top[:, None] + side)  # (n, H)
            in_w = (rows_w >= left_[:, None]) & (rows_w < left_[:, None] + side)  # (n, W)
            window = (in_h[:, None, :, None] & in_w[:, None, None, :]).expand(-1, c, -1, -1)
            cand = torch.where(window, (xs + eps * signs).clamp(lower, upper), cur)
            with torch.no_grad():
                out = _calls.logits(clf, cand)
            guard.update(out)
            ys = y if idx is None else y[idx]
            ts = None if t is None else (t if idx is None else t[idx])
            new_margin = _margin(out.float(), ys, ts)
            # Only images still running take a better candidate.
            better = (new_margin < margin) & (margin > 0)
            margin = torch.where(better, new_margin, margin)
            chosen = torch.where(better.view(-1, 1, 1, 1), cand, cur)
            if idx is None:
                adv = chosen
            else:
                adv[idx] = chosen
            used += 1
            bar.update(1)
        return adv, used
