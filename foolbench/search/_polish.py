"""Gradient polish: a white-box refinement step that a black-box search can interleave."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from foolbench import _checks
from foolbench.encodings import Genomes
from foolbench.encodings._base import Differentiable
from foolbench.errors import InvalidArgumentError
from foolbench.models import Classifier
from foolbench.search import _calls
from foolbench.search._evaluator import in_bounds
from foolbench.search._operators import log_level

__all__ = ["GradientPolish"]


class GradientPolish:
    """Adam steps on the continuous genes of elites, towards each elite's own class (white box).

    Evolution finds a CPPN's structure (which nodes, which connections, which activations); near the
    aim it spends most of its children on weight changes that a gradient would point out. Every
    ``every`` generations, :class:`~foolbench.search.MAPElites` (``polish=``) takes the elites still
    below ``below`` and at or above ``above`` (the ones nearest to ``below`` first, at most ``most``
    and at most a batch), moves their genes (a CPPN's connection weights; a direct genome's pixels)
    by ``steps`` Adam steps on the log-probability of their niche's class through the classifier's
    float32 :meth:`~foolbench.models.BaseClassifier.reference`, keeps for each the genes that scored
    best, and puts them in that generation's batch in place of as many mutants. The batch is then
    scored and competes like any other, so the archive only ever holds the evaluator's scores. The
    structure is never changed, so the images keep the encoding's look (a CPPN's regular patterns).

    Each gradient step costs a forward and a backward pass per polished genome (and the genes after
    the last step one more forward pass, so that ``steps=1`` can keep its step): EfficientNet-Lite0
    on the 2-core CPU, 0.7-0.9 s per step for 10 genomes; in a 10-minute search against the compiled
    model, about 3 evaluations' time per gradient image. :attr:`~foolbench.search.MAPElites.gradient_images`
    counts the images that went through the model this way, forward and backward (``steps`` per
    polished genome; not the final forward pass), and ``evaluations`` counts only the batch's children,
    as without polishing: compare searches at equal time, not at equal evaluations.

    Args:
        every: polish in generations ``every``, ``2 * every``, ... (> 0).
        steps: Adam steps per polish (> 0).
        lr: Adam's step size, in gene units (CPPN weights live in [-10, 10]; pixels in [0, 1]). On
            EfficientNet-Lite0, 6 elites at 69-99% polished for 60 steps from one archive
            (``benchmarks/bench_polish_lr.py``) ended at a mean of 85.2 / 85.8 / 86.6 / 88.0 / 87.6%
            with 0.0005 / 0.001 / 0.002 / 0.005 / 0.01 (from 82.7%); 0.01 never improved the one at
            98.55% (0.0005-0.005 took it to 99.07-99.16%).
        below: polish only the elites below this confidence, in (0, 1] (default: 99.99%, the level
            ``parents="unmet-first"`` aims at).
        above: and only those at or above this confidence, in [0, 1) (0: all of them). Far from the
            aim a gradient step bought less than the mutants it displaced; near it, more (the CPU proxy
            in docs/methods/evolution.md).
        most: polish at most this many elites at a time (None: up to a batch).
        from_evaluations: from the first generation at or past this many evaluations on, polish every
            generation (an endgame: the structure found, the rest of the budget goes to the weights).
            None: only every ``every`` generations.
        from_seconds: the same, from this many seconds of search on (``seconds``, summed over resumed
            runs): with ``run(max_seconds=600)``, ``from_seconds=480`` spends the last two minutes
            polishing. None: no time-based endgame. Where it starts depends on the machine's speed,
            so such a search is not reproducible generation for generation (as ``max_seconds``);
            and ``seconds`` only grows inside :meth:`~foolbench.search.Evolution.run`, so with
            ``step()`` or ask/tell only ``from_evaluations`` starts an endgame.

    An elite that a polish could not improve is not polished again until it is replaced (the polish
    is deterministic: the same genes would give the same result), so an endgame spends its gradient
    steps on elites that changed since their last polish, and generations without one are all mutants.

    Raises:
        InvalidArgumentError: a value outside its range.

    Examples:
        >>> import torch, foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> enc = fb.encodings.CPPNEncoding((1, 28, 28))
        >>> polish = fb.search.GradientPolish(every=2, steps=3, lr=0.05)
        >>> search = fb.search.MAPElites(clf, enc, batch_size=16, seed=0, polish=polish)
        >>> res = search.run(generations=5, progress=False)
        >>> search.gradient_images > 0, res.evaluations
        (True, 80)
    """

    def __init__(
        self,
        *,
        every: int = 200,
        steps: int = 50,
        lr: float = 0.005,
        below: float = 0.9999,
        above: float = 0.9,
        most: int | None = None,
        from_evaluations: int | None = None,
        from_seconds: float | None = None,
    ) -> None:
        self.every = _checks.positive_int("every", every)
        self.steps = _checks.positive_int("steps", steps)
        self.lr = _checks.real("lr", lr, low=0.0, low_open=True)
        self.below = _checks.real("below", below, low=0.0, high=1.0, low_open=True)
        self.above = _checks.real("above", above, low=0.0, high=1.0, high_open=True)
        if self.above >= self.below:
            raise InvalidArgumentError(f"above must be below below={self.below:g}, got {self.above:g}")
        self.most = _checks.optional_positive_int("most", most)
        self.from_evaluations = (
            None if from_evaluations is None else _checks.nonnegative_int("from_evaluations", from_evaluations)
        )
        self.from_seconds = None if from_seconds is None else _checks.real("from_seconds", from_seconds, low=0.0)
        # compared with float32 fitness at the levels results decide by (as unmet-first parents and targets)
        self.below_log_prob = log_level(self.below)
        self.above_log_prob = -math.inf if self.above == 0.0 else log_level(self.above)

    def due(self, generation: int, *, evaluations: int, seconds: float) -> bool:
        """Whether generation ``generation`` polishes.

        Generation 0 (the random one) never does; after it, every ``every``-th generation and, once
        ``from_evaluations`` or ``from_seconds`` is reached, every generation.

        Args:
            generation: the generation about to be asked for.
            evaluations: the search's evaluations so far.
            seconds: the search's seconds so far.

        Returns:
            True where that generation's batch gets the polished elites.
        """
        if generation <= 0:
            return False
        if self.from_evaluations is not None and evaluations >= self.from_evaluations:
            return True
        if self.from_seconds is not None and seconds >= self.from_seconds:
            return True
        return generation % self.every == 0

    def __call__(
        self,
        classifier: Classifier,
        encoding: Differentiable[Any],
        genomes: Genomes,
        classes: torch.Tensor,
        *,
        bounds: tuple[float, float] = (0.0, 1.0),
        trace: list[torch.Tensor] | None = None,
    ) -> tuple[Genomes, torch.Tensor]:
        """Polish ``genomes`` towards ``classes``; returns the polished batch and its best log-probabilities.

        Deterministic for a deterministic model: no random draw. Where no step improved a genome, it
        comes back unchanged. The genes are scored ``steps + 1`` times: before each step and after the
        last one (a forward pass only). ``trace``: a list that gets each of those (B,) log-probabilities,
        e.g. to see where a step size stops paying.

        Shape:
            - classes: (B,) the class each genome is pushed towards.
            - output: the (B,) batch, and (B,) float32 log-probabilities its best genes scored.

        Raises:
            InvalidArgumentError: ``classes`` is not (B,).
        """
        n = len(genomes)
        if classes.shape != (n,):
            raise InvalidArgumentError(f"classes must have shape ({n},) for {n} genomes, got {tuple(classes.shape)}")
        genes = encoding.genes(genomes).float().requires_grad_(True)
        low, high = encoding.gene_bounds
        optimiser = torch.optim.Adam([genes], lr=self.lr)
        rows = torch.arange(n, device=genes.device)
        classes = classes.to(genes.device)
        best = torch.full((n,), -math.inf, device=genes.device)
        best_genes = genes.detach().clone()
        for step in range(self.steps + 1):  # the genes after the last step are scored too (no backward)
            last = step == self.steps
            with torch.set_grad_enabled(not last):
                images = in_bounds(encoding.render_genes(genomes, genes), bounds)
                log_probs = F.log_softmax(_calls.logits(classifier, images).float(), dim=1)[rows, classes]
            if trace is not None:
                trace.append(log_probs.detach().clone())
            better = log_probs.detach() > best
            best = torch.where(better, log_probs.detach(), best)
            best_genes = torch.where(better.view(-1, *[1] * (genes.dim() - 1)), genes.detach(), best_genes)
            if last:
                break
            (grad,) = torch.autograd.grad(-log_probs.sum(), genes)  # the genes' gradient only, not the model's
            genes.grad = grad
            optimiser.step()
            with torch.no_grad():
                genes.clamp_(low, high)
        return encoding.with_genes(genomes, best_genes), best

    def config(self) -> dict[str, Any]:
        return {
            "scores_last_step": True,  # a checkpoint of a polish that left its last step unscored is another one
            "every": self.every,
            "steps": self.steps,
            "lr": self.lr,
            "below": self.below,
            "above": self.above,
            "most": self.most,
            # absent when unset, so the checkpoints of searches from before the endgame still resume
            **({} if self.from_evaluations is None else {"from_evaluations": self.from_evaluations}),
            **({} if self.from_seconds is None else {"from_seconds": self.from_seconds}),
        }

    def __repr__(self) -> str:
        return (
            f"GradientPolish(every={self.every}, steps={self.steps}, lr={self.lr:g}, below={self.below:g}, "
            f"above={self.above:g}, most={self.most}"
            + ("" if self.from_evaluations is None else f", from_evaluations={self.from_evaluations}")
            + ("" if self.from_seconds is None else f", from_seconds={self.from_seconds:g}")
            + ")"
        )
