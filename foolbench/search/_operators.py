"""Parent selection and mutation schedules: the small strategies a search is built from."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from foolbench import _checkpoint, _checks
from foolbench.errors import InvalidArgumentError, InvalidTypeError

__all__ = [
    "ConstantStrength",
    "Curiosity",
    "CycleStrength",
    "Focus",
    "MutationSchedule",
    "ParentSelector",
    "RampStrength",
    "StepDecay",
    "Uniform",
    "UnmetFirst",
    "Weakest",
    "parent_selector",
    "rank_weights",
    "weighted_draw",
]


def weighted_draw(weights: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``n`` indices with probability proportional to ``weights``, without a host synchronisation.

    An inverse-CDF draw (cumulative sum, then ``searchsorted``) instead of
    ``torch.multinomial`` or ``nonzero``: nothing is read back to the host, so it
    can run inside a CUDA generation step. All-zero weights draw uniformly.

    Shape:
        - weights: (M,) non-negative.
        - output: (n,) int64 in [0, M).

    Examples:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> set(weighted_draw(torch.tensor([0.0, 1.0, 0.0, 1.0]), 100, g).tolist())
        {1, 3}
    """
    w = weights.float()
    # non-finite weights (a curiosity score past float32's range): +inf ones share the draw, NaN counts 0;
    # finite ones whose sum overflows are scaled down (finite weights with a finite sum are left as they are)
    posinf = w == math.inf
    w = torch.where(posinf.any(), posinf.float(), torch.nan_to_num(w, nan=0.0, neginf=0.0))
    w = torch.where(torch.isfinite(w.sum()), w, w / w.max())
    w = torch.where(w.sum() > 0, w, torch.ones_like(w))
    cdf = torch.cumsum(w, 0)
    u = torch.rand(n, generator=generator, device=w.device) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=w.shape[0] - 1)


def log_level(confidence: float) -> float:
    """The float32 log-probability level at which an elite counts as at ``confidence``, as results count it.

    Results call a class fooled when its confidence, in float64, is at least ``confidence``; float32
    log-probabilities compared with ``math.log(confidence)`` round that level to float32 and can pass an
    elite just below it. This is the smallest float32 at or above ``log(confidence)``: comparing float32
    log-probabilities with it decides as float64 would, on any device (MPS has no float64).

    Examples:
        >>> import math
        >>> log_level(0.99) >= math.log(0.99) and log_level(1.0) == 0.0
        True
    """
    exact = math.log(confidence)
    level = torch.tensor(exact, dtype=torch.float32)
    if float(level) < exact:
        level = torch.nextafter(level, torch.tensor(math.inf))
    return float(level)


def unmet_pool(fitness: torch.Tensor, occupied: torch.Tensor, log_confidence: float) -> torch.Tensor:
    """(M,) bool: occupied niches whose elite is below ``log_confidence``, or every occupied one once none is."""
    pool = occupied & (fitness < log_confidence)
    return torch.where(pool.any(), pool, occupied)


def rank_weights(key: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Linear rank weights over ``pool``: the lowest ``key`` gets ``k`` (the pool's size), the next ``k - 1``, ...

    Tied keys share the better weight; outside the pool the weight is 0. Ranks come from a sort:
    nothing is read back to the host.

    Shape:
        - key, pool: (M,) float and bool.
        - output: (M,) int64.

    Examples:
        >>> import torch
        >>> rank_weights(torch.tensor([0.5, 0.1, 0.9, 0.1]), torch.tensor([True, True, True, False])).tolist()
        [2, 3, 1, 0]
    """
    key = torch.where(pool, key, torch.inf)
    rank = torch.searchsorted(torch.sort(key).values, key)  # equal key, equal rank
    return (pool.sum() - rank).clamp(min=0) * pool


@runtime_checkable
class ParentSelector(Protocol):
    """Chooses which elites of an archive become parents.

    Shape:
        - fitness: (M,) log-probability of each niche's elite (-inf while empty); with
          ``MAPElites(islands=K)``, M = K x classes and each niche shows its class's best over the islands.
        - occupied: (M,) bool.
        - output: (n,) int64 niche indices.
    """

    def __call__(
        self, fitness: torch.Tensor, occupied: torch.Tensor, n: int, generator: torch.Generator
    ) -> torch.Tensor: ...

    def config(self) -> dict[str, Any]:
        """Settings recorded in checkpoints and results."""
        ...


class Uniform:
    """Every occupied niche is equally likely to give a parent (the paper's MAP-Elites).

    Examples:
        >>> import torch
        >>> sel = Uniform()
        >>> sel(torch.tensor([-1.0, -torch.inf]), torch.tensor([True, False]), 3, torch.Generator()).tolist()
        [0, 0, 0]
    """

    def __call__(
        self, fitness: torch.Tensor, occupied: torch.Tensor, n: int, generator: torch.Generator
    ) -> torch.Tensor:
        return weighted_draw(occupied, n, generator)

    def config(self) -> dict[str, Any]:
        return {"name": "uniform"}

    def __repr__(self) -> str:
        return "Uniform()"


class UnmetFirst:
    """Parents come from niches whose elite is still below ``confidence``; uniform once all reach it.

    Spends the budget where it is still needed: on MNIST it halves the
    evaluations to reach 99.99% on every digit.

    Args:
        confidence: the target probability, in (0, 1].

    Examples:
        >>> import math, torch
        >>> sel = UnmetFirst(confidence=0.9)
        >>> fit = torch.tensor([math.log(0.95), math.log(0.5)])
        >>> sel(fit, torch.tensor([True, True]), 4, torch.Generator()).tolist()
        [1, 1, 1, 1]
    """

    def __init__(self, *, confidence: float = 0.9999) -> None:
        self.confidence = _checks.real("confidence", confidence, low=0.0, high=1.0, low_open=True)
        self._log = log_level(self.confidence)

    def __call__(
        self, fitness: torch.Tensor, occupied: torch.Tensor, n: int, generator: torch.Generator
    ) -> torch.Tensor:
        return weighted_draw(unmet_pool(fitness, occupied, self._log), n, generator)

    def config(self) -> dict[str, Any]:
        return {"name": "unmet-first", "confidence": self.confidence}

    def __repr__(self) -> str:
        return f"UnmetFirst(confidence={self.confidence:g})"


class Curiosity:
    """Prefer elites whose children recently improved some niche (curiosity score, Cully & Demiris 2018).

    Each niche keeps a score: every child of its elite that enters the archive
    adds ``reward``, every child that does not subtracts ``penalty``. Parents are
    drawn with weight ``floor + softplus(score)``, among niches still below
    ``confidence`` while there are any (like :class:`UnmetFirst`). The scores are
    part of the search's checkpoint.

    Args:
        confidence: classes at or above it stop giving parents while others are below (1: never).
        reward: score added per successful child.
        penalty: score removed per unsuccessful child.
        floor: minimum weight, so no occupied niche is starved.

    Examples:
        >>> import torch
        >>> sel = Curiosity(confidence=1.0)
        >>> sel.feedback(torch.tensor([0, 0, 1]), torch.tensor([True, True, False]), num_niches=2)
        >>> sel.score.tolist()
        [2.0, -0.5]
    """

    def __init__(
        self, *, confidence: float = 0.9999, reward: float = 1.0, penalty: float = 0.5, floor: float = 0.05
    ) -> None:
        self.confidence = _checks.real("confidence", confidence, low=0.0, high=1.0, low_open=True)
        self.reward = _checks.real("reward", reward, low=0.0)
        self.penalty = _checks.real("penalty", penalty, low=0.0)
        self.floor = _checks.real("floor", floor, low=0.0, low_open=True)
        self._log = log_level(self.confidence)
        self.score: torch.Tensor | None = None

    def __call__(
        self, fitness: torch.Tensor, occupied: torch.Tensor, n: int, generator: torch.Generator
    ) -> torch.Tensor:
        score = self.score if self.score is not None else torch.zeros_like(fitness)
        pool = unmet_pool(fitness, occupied, self._log)
        weights = pool.float() * (self.floor + torch.nn.functional.softplus(score.to(fitness.device)))
        return weighted_draw(weights, n, generator)

    def feedback(self, parents: torch.Tensor, success: torch.Tensor, *, num_niches: int) -> None:
        """Update the scores: ``parents`` (B,) niche of each child's parent, ``success`` (B,) bool."""
        if self.score is None:
            self.score = torch.zeros(num_niches, device=parents.device)
        delta = torch.where(success, self.reward, -self.penalty).to(self.score)
        self.score = self.score.index_add(0, parents.to(self.score.device), delta)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.score is None else {"score": _checkpoint.snapshot(self.score)}

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device) -> None:
        score = state.get("score")
        self.score = None if score is None else score.to(device, torch.float32, copy=True)

    def config(self) -> dict[str, Any]:
        return {
            "name": "curiosity",
            "confidence": self.confidence,
            "reward": self.reward,
            "penalty": self.penalty,
            "floor": self.floor,
        }

    def __repr__(self) -> str:
        return f"Curiosity(confidence={self.confidence:g}, reward={self.reward:g}, penalty={self.penalty:g})"


class Weakest(UnmetFirst):
    """Parents mostly from the weakest niches: linear rank weights among those still below ``confidence``.

    The niches still below ``confidence`` (all occupied ones once none is) are
    ranked by their elite's confidence; the weakest gets weight ``k``, the next
    ``k - 1``, ..., the strongest 1 (tied niches share the better weight). The
    budget goes where a class lags, which lifts the median class rather than the
    best one. Ranks come from a sort: nothing is read back to the host.

    Args:
        confidence: classes at or above it stop giving parents while others are below (1: never).

    Examples:
        >>> import math, torch
        >>> sel = Weakest(confidence=1.0)
        >>> fit = torch.tensor([math.log(0.9), math.log(0.1), -torch.inf])
        >>> draws = sel(fit, torch.tensor([True, True, False]), 3000, torch.Generator().manual_seed(0))
        >>> round(float((draws == 1).float().mean()), 1)  # weights 1 : 2
        0.7
    """

    def __call__(
        self, fitness: torch.Tensor, occupied: torch.Tensor, n: int, generator: torch.Generator
    ) -> torch.Tensor:
        pool = unmet_pool(fitness, occupied, self._log)
        return weighted_draw(rank_weights(fitness.float(), pool), n, generator)

    def config(self) -> dict[str, Any]:
        return {"name": "weakest", "confidence": self.confidence}

    def __repr__(self) -> str:
        return f"Weakest(confidence={self.confidence:g})"


class Focus:
    """A search over every class whose parents come mostly from a few: the rest are stepping stones.

    MAP-Elites keeps an elite for every class it is given, and a child of one class's elite often
    wins another class (the paper's explanation of why evolving all 1,000 ImageNet classes at once
    works). ``Focus`` lets a search that cares about a few classes keep that effect: give the search
    every class, and this selector draws a ``share`` of the parents from the ``niches`` of interest
    (those still below ``confidence`` first, like :class:`UnmetFirst`) and the rest uniformly from
    every occupied niche. Read the classes of interest from the result.

    Args:
        niches: archive positions of interest (with ``classes=None`` on the search: class indices).
        share: fraction of the parents drawn from ``niches``, in [0, 1].
        confidence: niches of interest at or above it stop giving parents while others are below.

    Raises:
        InvalidArgumentError: empty ``niches`` or one not an int >= 0, ``share`` outside [0, 1].

    Examples:
        >>> import torch
        >>> sel = Focus([2], share=0.75)
        >>> picks = sel(torch.full((4,), -3.0), torch.ones(4, dtype=torch.bool), 4000, torch.Generator())
        >>> round(float((picks == 2).float().mean()), 1)  # 0.75 + 0.25 / 4
        0.8
    """

    def __init__(self, niches: Sequence[int], *, share: float = 0.5, confidence: float = 0.9999) -> None:
        if isinstance(niches, (str, bytes)) or not isinstance(niches, Sequence) or not niches:
            raise InvalidArgumentError(f"niches must be a non-empty list of archive positions, got {niches!r}")
        for k in niches:
            if isinstance(k, bool) or not isinstance(k, int) or k < 0:
                raise InvalidArgumentError(f"niches must hold archive positions (ints >= 0), got {k!r}")
        self.niches = sorted(set(niches))
        self.share = _checks.real("share", share, low=0.0, high=1.0)
        self.confidence = _checks.real("confidence", confidence, low=0.0, high=1.0, low_open=True)
        self._log = log_level(self.confidence)
        self._mask: torch.Tensor | None = None

    def __call__(
        self, fitness: torch.Tensor, occupied: torch.Tensor, n: int, generator: torch.Generator
    ) -> torch.Tensor:
        if max(self.niches) >= fitness.shape[0]:
            raise InvalidArgumentError(
                f"Focus niches go up to {max(self.niches)} but the archive has {fitness.shape[0]} niches: "
                "give the search every class (classes=None) or positions inside its class list"
            )
        mine = self._mask
        if mine is None or mine.shape != occupied.shape or mine.device != occupied.device:
            mine = torch.zeros(occupied.shape, dtype=torch.bool, device=occupied.device)
            for k in self.niches:  # built once, on the device: no copy from the host inside a step
                mine[k] = True
            self._mask = mine
        ours = unmet_pool(fitness, occupied & mine, self._log)
        focused = weighted_draw(torch.where(ours.any(), ours, occupied), n, generator)
        anywhere = weighted_draw(occupied, n, generator)
        use_focused = torch.rand(n, generator=generator, device=generator.device).to(fitness.device) < self.share
        return torch.where(use_focused, focused, anywhere)

    def config(self) -> dict[str, Any]:
        return {"name": "focus", "niches": list(self.niches), "share": self.share, "confidence": self.confidence}

    def __repr__(self) -> str:
        return f"Focus({len(self.niches)} niches, share={self.share:g})"


_SELECTORS: dict[str, type[Uniform | UnmetFirst | Curiosity]] = {
    "uniform": Uniform,
    "unmet-first": UnmetFirst,
    "curiosity": Curiosity,
    "weakest": Weakest,
}


def parent_selector(spec: str | ParentSelector, *, confidence: float | None = None) -> ParentSelector:
    """Turn a name (``"uniform"``, ``"unmet-first"``, ``"curiosity"``, ``"weakest"``) or a selector object into a :class:`ParentSelector`.

    Args:
        spec: a name or a selector (returned as it is).
        confidence: with a name: the level below which a class still counts as unmet (default
            0.9999), e.g. the target of the run; ``"uniform"`` has none.

    Raises:
        InvalidArgumentError: an unknown name, a ``confidence`` outside (0, 1], or a ``confidence``
            with a selector object (it carries its own).
        InvalidTypeError: neither a name nor a callable with ``config()``.

    Examples:
        >>> parent_selector("unmet-first")
        UnmetFirst(confidence=0.9999)
        >>> parent_selector("weakest", confidence=0.99)
        Weakest(confidence=0.99)
    """
    if confidence is not None:
        confidence = _checks.real("confidence", confidence, low=0.0, high=1.0, low_open=True)
        if not isinstance(spec, str):
            raise InvalidArgumentError("confidence applies to a selector given by name; a selector object has its own")
    if isinstance(spec, str):
        if spec not in _SELECTORS:
            raise InvalidArgumentError(f"parents must be one of {sorted(_SELECTORS)} or a selector, got {spec!r}")
        kind = _SELECTORS[spec]
        if confidence is None or issubclass(kind, Uniform):
            return kind()
        return kind(confidence=confidence)
    if isinstance(spec, type):  # a class passes the protocol check too, then fails at the first draw
        raise InvalidTypeError(
            f"parents must be a name or a ParentSelector instance, got the class {spec.__name__}: "
            f"pass an instance, e.g. {spec.__name__}()"
        )
    if not isinstance(spec, ParentSelector):
        raise InvalidTypeError(
            f"parents must be a name or a ParentSelector (callable with config()), got {type(spec).__name__}"
        )
    return spec


@runtime_checkable
class MutationSchedule(Protocol):
    """Maps a generation number to the mutation strength passed to ``Encoding.mutate``."""

    def __call__(self, generation: int) -> float: ...

    def config(self) -> dict[str, Any]:
        """Settings recorded in checkpoints and results."""
        ...


class ConstantStrength:
    """The same mutation strength in every generation (the default: 1, the encoding's own rates).

    Examples:
        >>> ConstantStrength(0.5)(1000)
        0.5
    """

    def __init__(self, strength: float = 1.0) -> None:
        self.strength = _checks.real("strength", strength, low=0.0, low_open=True)

    def __call__(self, generation: int) -> float:
        return self.strength

    def config(self) -> dict[str, Any]:
        return {"name": "constant", "strength": self.strength}

    def __repr__(self) -> str:
        return f"ConstantStrength({self.strength:g})"


class StepDecay:
    """Multiply the mutation strength by ``factor`` every ``every`` generations, down to ``minimum``.

    The decaying mutation rate of Nguyen et al. (2015) for direct encodings:
    ``StepDecay(factor=0.5, every=1000, minimum=0.01)`` halves the encoding's rate
    every 1,000 generations.

    Args:
        factor: multiplier per step, in (0, 1].
        every: generations per step.
        minimum: the strength never goes below this, in (0, 1].

    Examples:
        >>> sched = StepDecay(factor=0.5, every=10, minimum=0.2)
        >>> [sched(g) for g in (0, 10, 20, 30)]
        [1.0, 0.5, 0.25, 0.2]
    """

    def __init__(self, *, factor: float = 0.5, every: int = 1000, minimum: float = 0.01) -> None:
        self.factor = _checks.real("factor", factor, low=0.0, high=1.0, low_open=True)
        self.every = _checks.positive_int("every", every)
        self.minimum = _checks.real("minimum", minimum, low=0.0, high=1.0, low_open=True)

    def __call__(self, generation: int) -> float:
        return max(self.minimum, self.factor ** (generation // self.every))

    def config(self) -> dict[str, Any]:
        return {"name": "step-decay", "factor": self.factor, "every": self.every, "minimum": self.minimum}

    def __repr__(self) -> str:
        return f"StepDecay(factor={self.factor:g}, every={self.every}, minimum={self.minimum:g})"


class CycleStrength:
    """Take the strengths in turn, one per generation: several emitters of different strengths in one search.

    Args:
        strengths: the mutation strengths to cycle through, each > 0.

    Examples:
        >>> sched = CycleStrength((0.5, 1.0, 2.0))
        >>> [sched(g) for g in range(1, 7)]
        [0.5, 1.0, 2.0, 0.5, 1.0, 2.0]
    """

    def __init__(self, strengths: tuple[float, ...] = (0.5, 1.0, 2.0)) -> None:
        if not isinstance(strengths, (tuple, list)) or not strengths:
            raise InvalidArgumentError(f"strengths must be a non-empty tuple of numbers, got {strengths!r}")
        self.strengths = tuple(_checks.real("strengths", s, low=0.0, low_open=True) for s in strengths)

    def __call__(self, generation: int) -> float:
        return self.strengths[(generation - 1) % len(self.strengths)]

    def config(self) -> dict[str, Any]:
        return {"name": "cycle", "strengths": list(self.strengths)}

    def __repr__(self) -> str:
        return f"CycleStrength({self.strengths})"


class RampStrength:
    """Move the strength geometrically from ``start`` to ``end`` over ``generations``, then keep ``end``.

    A strong mutation climbs fast from random images and a weak one makes the last small steps
    (``start=2, end=0.5``: the CPPN search on ImageNet gains from strength 2 early, MNIST's final
    step to 99.99% from 0.5). Generation ``g`` (counted from 1) gets
    ``start * (end / start) ** min(1, (g - 1) / (generations - 1))`` (``end`` from the start when
    ``generations`` is 1).

    Args:
        start: strength of generation 1, > 0.
        end: strength from generation ``generations`` on, > 0.
        generations: length of the ramp, >= 1.

    Examples:
        >>> sched = RampStrength(start=2.0, end=0.5, generations=3)
        >>> [sched(g) for g in (1, 2, 3, 10)]
        [2.0, 1.0, 0.5, 0.5]
    """

    def __init__(self, *, start: float = 2.0, end: float = 0.5, generations: int = 1000) -> None:
        self.start = _checks.real("start", start, low=0.0, low_open=True)
        self.end = _checks.real("end", end, low=0.0, low_open=True)
        self.generations = _checks.positive_int("generations", generations)

    def __call__(self, generation: int) -> float:
        if self.generations == 1 or generation >= self.generations:
            return self.end
        if generation <= 1:
            return self.start
        t = max(0, generation - 1) / (self.generations - 1)
        return math.exp((1.0 - t) * math.log(self.start) + t * math.log(self.end))  # in logs: no underflow

    def config(self) -> dict[str, Any]:
        return {"name": "ramp", "start": self.start, "end": self.end, "generations": self.generations}

    def __repr__(self) -> str:
        return f"RampStrength(start={self.start:g}, end={self.end:g}, generations={self.generations})"


class NearStrength:
    """Children of elites near the aim mutated at their own strength; the others at ``base``'s.

    A strong mutation climbs fast from weak images but, near the aim, throws away more than it finds:
    :class:`~foolbench.search.MAPElites` mutates the children of elites already at or above
    ``near_confidence`` at ``near_strength`` and the rest at ``base(generation)``. Each generation it
    then mutates the parents twice (once per strength) and keeps one child per parent, on the device
    (no host read), so the random stream is not the one of ``base`` alone. A parent bred by crossover
    counts as near when the elite drawn first is. Only :class:`~foolbench.search.MAPElites` reads the
    parents' confidence; called with a generation, the schedule gives ``base``'s strength.

    With ``refine=scale`` the children of near elites are not mutated but refined: only some of their
    continuous genes move, by small steps (the encoding's ``refine(genomes, generator, scale=)``, which
    :class:`~foolbench.encodings.CPPNEncoding` has), so a near-finished image is tuned rather than
    rebuilt. With ``MAPElites(crossover=...)`` a crossed parent is refined after crossing, so its child
    may mix two elites' weights (the first parent's structure is kept either way).

    Args:
        base: the strength of the other children: a number, a schedule, or None (1).
        near_confidence: the confidence from which an elite's children get ``near_strength``, in (0, 1).
        near_strength: their strength, > 0 (default 1: the encoding's own rates).
        refine: refine those children at this scale, in (0, 1], instead of mutating them (None: mutate at
            ``near_strength``; give one or the other).

    Raises:
        InvalidArgumentError: ``near_confidence`` outside (0, 1), ``near_strength`` <= 0, ``refine``
            outside (0, 1] or given with ``near_strength``, or a constant ``base`` equal to
            ``near_strength`` (it would change nothing but the random stream).

    Examples:
        >>> sched = NearStrength(2.0, near_confidence=0.9)
        >>> sched(5), sched.near_strength, sched.config()["base"]
        (2.0, 1.0, {'name': 'constant', 'strength': 2.0})
        >>> NearStrength(2.0, near_confidence=0.9, refine=0.02).config()["refine"]
        0.02
    """

    def __init__(
        self,
        base: float | MutationSchedule | None = None,
        *,
        near_confidence: float,
        near_strength: float | None = None,
        refine: float | None = None,
    ) -> None:
        self.base = mutation_schedule(base, name="base")
        if isinstance(self.base, NearStrength):
            raise InvalidArgumentError("base must not be another NearStrength")
        self.near_confidence = _checks.real(
            "near_confidence", near_confidence, low=0.0, high=1.0, low_open=True, high_open=True
        )
        if refine is not None and near_strength is not None:
            raise InvalidArgumentError(
                f"give near_strength or refine, not both: refined children are not mutated "
                f"(got near_strength={near_strength!r}, refine={refine!r})"
            )
        self.refine = None if refine is None else _checks.real("refine", refine, low=0.0, high=1.0, low_open=True)
        self.near_strength = _checks.real(
            "near_strength", 1.0 if near_strength is None else near_strength, low=0.0, low_open=True
        )
        if self.refine is None and isinstance(self.base, ConstantStrength) and self.base.strength == self.near_strength:
            raise InvalidArgumentError(
                f"near_strength={self.near_strength:g} equals the base strength: the schedule would change "
                "nothing but the random stream"
            )
        self.near_log_prob = log_level(self.near_confidence)  # float32 fitness compared as results decide

    def __call__(self, generation: int) -> float:
        return float(self.base(generation))

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": "near", "base": self.base.config(), "near_confidence": self.near_confidence}
        if self.refine is None:  # as before the option, so older checkpoints still resume
            config["near_strength"] = self.near_strength
        else:
            config["refine"] = self.refine
        return config

    def __repr__(self) -> str:
        near = f"near_strength={self.near_strength:g}" if self.refine is None else f"refine={self.refine:g}"
        return f"NearStrength({self.base!r}, near_confidence={self.near_confidence:g}, {near})"


def mutation_schedule(spec: float | MutationSchedule | None, *, name: str = "mutation_schedule") -> MutationSchedule:
    """None -> strength 1, a number -> constant strength, or a schedule object as it is.

    Args:
        spec: None, a strength > 0 or a schedule instance.
        name: the argument's name in error messages.

    Raises:
        InvalidArgumentError: a strength that is not a finite number > 0.
        InvalidTypeError: a schedule class instead of an instance, or anything else that is not a schedule.

    Examples:
        >>> mutation_schedule(0.5)
        ConstantStrength(0.5)
    """
    if spec is None:
        return ConstantStrength()
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return ConstantStrength(_checks.real(name, spec, low=0.0, low_open=True))
    if isinstance(spec, type):  # a class passes the protocol check too, then fails at the first generation
        raise InvalidTypeError(
            f"{name} must be a number, None or a MutationSchedule instance, got the class {spec.__name__}: "
            f"pass an instance, e.g. {spec.__name__}()"
        )
    if not isinstance(spec, MutationSchedule):
        raise InvalidTypeError(f"{name} must be a number, None or a MutationSchedule, got {type(spec).__name__}")
    return spec
