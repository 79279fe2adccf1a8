"""Black-box evolution of fooling images: MAP-Elites and a single-class baseline.

A search is split into roles: an :class:`~foolbench.search.Evaluator` scores
genomes (the search never calls the classifier), a
:class:`~foolbench.search.ParentSelector` picks parents, a
:class:`~foolbench.search.MutationSchedule` sets the mutation strength per
generation, and :class:`~foolbench.search.Callback` objects (budgets, targets,
progress, checkpoints, loggers) subscribe to the short ``run()`` loop.
"""

from __future__ import annotations

import copy
import math
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from foolbench import _checkpoint, _checks
from foolbench.encodings import Encoding, Genomes
from foolbench.encodings._base import Differentiable, select_rows
from foolbench.errors import CheckpointError, InvalidArgumentError, InvalidTypeError
from foolbench.models import Classifier, check_classifier, weights_digest
from foolbench.search._archive import ClassArchive
from foolbench.search._callbacks import Budget, Callback, Checkpointer, ProgressBar, StopAtTarget, _path
from foolbench.search._evaluator import (
    Evaluator,
    LocalEvaluator,
    _bounds,
    _device_of,
    check_encoding,
    check_shapes,
    identity_digests,
    render_in_bounds,
)
from foolbench.search._operators import (
    Focus,
    MutationSchedule,
    NearStrength,
    ParentSelector,
    log_level,
    parent_selector,
    weighted_draw,
)
from foolbench.search._operators import mutation_schedule as _schedule
from foolbench.search._polish import GradientPolish
from foolbench.search._result import FoolingResult, History

__all__ = ["Evolution", "MAPElites", "RandomSearch", "SingleClassEvolution", "search_device"]

_FORMAT = "foolbench.evolution"
_VERSION = 2


def _check_log_probs(scores: torch.Tensor, *, source: str = "log_probs") -> None:
    """Refuse scores above 0 (probabilities or logits given as log-probabilities): they would corrupt the archive.

    NaN is allowed: such a child never enters the archive (the others of its batch still may).
    """
    if bool((scores > 0).any()):
        raise InvalidArgumentError(
            f"{source} gave values above 0 (up to {float(scores.nan_to_num(nan=0.0).max()):.4g}): a search "
            "takes log-probabilities (log_softmax of the logits), not probabilities or logits"
        )


def search_device(device: str | torch.device | None, default: str | torch.device) -> torch.device:
    """Resolve a search's ``device`` argument (None: ``default``), refusing devices this machine lacks.

    Raises:
        InvalidArgumentError: an unknown device string, or CUDA/MPS where there is none.
    """
    return _checks.torch_device("device", default if device is None else device)


def pad_rows(rows: torch.Tensor, total: int) -> torch.Tensor:
    """``rows`` padded (its first entry repeated) to the next power of two, or to ``total`` if that is less.

    A batch drawn from ``total`` candidates then takes one of about log2(total) sizes, so shape-keyed
    caches (cuDNN's plans) stay small.

    Shape:
        rows: (N,) with 1 <= N <= total; returns (P,) with N <= P, whose first N entries are ``rows``.

    Examples:
        >>> pad_rows(torch.tensor([4, 7, 9]), 512).tolist(), pad_rows(torch.tensor([1, 2, 3]), 3).tolist()
        ([4, 7, 9, 4], [1, 2, 3])
    """
    n = int(rows.shape[0])
    padded = min(1 << (n - 1).bit_length(), max(n, total))
    return torch.cat([rows, rows[:1].expand(padded - n)])


class Evolution(ABC):
    """The ask/tell protocol, run loop, history and checkpoints shared by evolutionary searches.

    Subclasses say how parents are drawn (``_parents``) and how an evaluated batch is
    inserted (``_insert``), and may change what a generation proposes (``_propose``:
    random genomes in generation 0, mutated parents after); everything else
    (evaluation through the evaluator, RNG, counters, history, checkpoints,
    callbacks) lives here.
    """

    method = "evolution"

    def __init__(
        self,
        classifier: Classifier,
        encoding: Encoding,
        *,
        classes: list[int],
        batch_size: int,
        seed: int | None,
        evaluator: Evaluator | None,
        device: str | torch.device | None,
        mutation_schedule: float | MutationSchedule | None,
    ) -> None:
        self.classifier = check_classifier(classifier)
        check_encoding(encoding, search=True)
        check_shapes(encoding, self.classifier)
        if evaluator is not None and not isinstance(evaluator, Evaluator):
            raise InvalidTypeError(
                f"evaluator must be callable as evaluator(genomes, columns=...), got {type(evaluator).__name__}"
            )
        self.encoding = encoding
        # a checkpoint resumed with another model (even of the same shape) is refused
        self._model_digest = weights_digest(self.classifier.network())
        # and with the same weights behind other preprocessing or a defense
        # and with the same weights in another architecture (a ReLU and a Sigmoid have no weights); the digests
        # a RayEvaluator's replicas report, computed by the same function
        scoring, architecture, encoding_digest = identity_digests(self.classifier, encoding)
        assert scoring is not None and architecture is not None  # a checked classifier, an encoding with config
        self._scoring_digest, self._architecture_digest = scoring, architecture
        remote = getattr(evaluator, "model_digest", None)  # RayEvaluator: the weights its replicas built
        if isinstance(remote, str) and remote != self._model_digest:
            raise InvalidArgumentError(
                f"evaluator scores with another model (weights {remote}) than classifier (weights "
                f"{self._model_digest}): the search would report the evaluator's confidences as the classifier's"
            )
        # and what the weights do not show: preprocessing or a defense, the architecture, the encoding
        for attr, ours, what in (
            ("scoring_digest", self._scoring_digest, "other preprocessing or defense than classifier"),
            ("architecture_digest", self._architecture_digest, "another architecture than classifier"),
            ("encoding_digest", encoding_digest, "another encoding than encoding (its config() differs)"),
        ):
            theirs = getattr(evaluator, attr, None)
            if isinstance(theirs, str) and theirs != ours:
                raise InvalidArgumentError(
                    f"evaluator scores with {what} ({attr} {theirs}, the search's {ours}): the search would "
                    "report the evaluator's confidences as the classifier's"
                )
        self.evaluator: Evaluator = LocalEvaluator(self.classifier, encoding) if evaluator is None else evaluator
        reference = self.classifier.reference()  # the float32 twin of a reduced-precision classifier
        # its evaluator (None when the classifier is its own reference), shared by verify and the reported confidences
        self._reference_eval = None if reference is self.classifier else LocalEvaluator(reference, encoding)
        self._reported_cache: tuple[float, torch.Tensor, bool] | None = None  # reported_at's last answer
        self.classes = classes
        self.batch_size = _checks.positive_int("batch_size", batch_size)
        self.seed = secrets.randbits(62) if seed is None else _checks.seed_int("seed", seed)
        self.device = search_device(device, self.classifier.device)
        self.schedule = _schedule(mutation_schedule)
        self._rng = torch.Generator(device=self.device).manual_seed(self.seed)
        num = self.classifier.num_classes
        self._columns = None if classes == list(range(num)) else torch.tensor(classes, device=self.device)
        self.generation = 0
        self.evaluations = 0
        self.seconds = 0.0
        self._asked: Genomes | None = None
        self._rng_before_ask: torch.Tensor | None = None
        self._torn = False
        self._unobserved = False  # a generation not yet seen by every callback (see _loop)
        self._hist_evals: list[int] = []
        self._hist_conf: list[torch.Tensor] = []

    # -- subclass hooks ---------------------------------------------------------------
    @abstractmethod
    def _parents(self, n: int) -> Genomes: ...

    @abstractmethod
    def _insert(self, genomes: Genomes, scores: torch.Tensor) -> torch.Tensor:
        """Insert a batch with its (B, M) scores for the target classes; (,) count of improved classes."""

    @abstractmethod
    def best_log_probs(self) -> torch.Tensor:
        """(M,) log-probability of the best genome found for each target class."""

    @abstractmethod
    def best_genomes(self) -> Genomes:
        """The best genome found for each target class, (M,) batch: a copy (the search goes on changing its own)."""

    @abstractmethod
    def _state(self) -> dict[str, Any]: ...

    @abstractmethod
    def _load_state(self, state: dict[str, Any], *, source: str) -> None: ...

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "method": self.method,
            "classes": list(self.classes),
            "batch_size": self.batch_size,
            "seed": self.seed,
            "encoding": self.encoding.config(),
            "input_shape": list(self.classifier.input_shape),
            "num_classes": self.classifier.num_classes,
            "model": self._model_digest,
            "scoring": self._scoring_digest,
            "architecture": self._architecture_digest,
            "mutation_schedule": self.schedule.config(),
            "rng_device": self.device.type,
        }
        if self._reference_eval is not None:  # fast scores (reduced precision or compiled), wrapped or not
            precision = getattr(self.classifier, "precision", "reduced")
            if precision != "fp32":  # absent at fp32, so float32 checkpoints from before the key still resume
                config["precision"] = precision
            for key, attribute in (("compile", "compile_module"), ("fold_batchnorm", "fold_batchnorm")):
                if getattr(self.classifier, attribute, False):  # other float rounding, so another search path
                    config[key] = True
        return config

    # -- ask / tell ---------------------------------------------------------------------
    def ask(self, n: int | None = None) -> Genomes:
        """Propose ``n`` (default ``batch_size``) new genomes: random ones in generation 0, mutants after
        (:class:`RandomSearch`: random ones every generation).

        If anything fails before the batch is told, the search's RNG is rolled
        back: a checkpoint never holds the random draws of a batch that was not
        evaluated.

        Raises:
            RuntimeError: the previous batch was not passed to :meth:`tell` yet.
        """
        if self._asked is not None:
            raise RuntimeError("ask() called twice: pass the log-probabilities of the last batch to tell() first")
        self._check_whole()
        n = self.batch_size if n is None else _checks.positive_int("n", n)
        before = self._rng.get_state()
        try:
            genomes = self._propose(n)
        except BaseException:
            self._rng.set_state(before)
            raise
        self._asked, self._rng_before_ask = genomes, before
        return genomes

    def _propose(self, n: int) -> Genomes:
        """The next ``n`` genomes to evaluate: random ones in generation 0, mutated parents after."""
        genomes: Genomes
        if self.generation == 0:
            genomes = self.encoding.sample(n, self._rng)
        else:
            genomes = self.encoding.mutate(self._parents(n), self._rng, strength=float(self.schedule(self.generation)))
        return genomes

    def cancel(self) -> None:
        """Drop the batch handed out by :meth:`ask` and roll the RNG back to before it."""
        if self._rng_before_ask is not None:
            self._rng.set_state(self._rng_before_ask)
        self._asked = self._rng_before_ask = None

    def images(self, genomes: Genomes) -> torch.Tensor:
        """Render genomes into the classifier's raw input range (its ``bounds``)."""
        return render_in_bounds(self.encoding, genomes, _bounds(self.classifier))

    def tell(self, log_probs: torch.Tensor) -> int:
        """Insert the last asked batch with the log-probabilities the classifier gave it.

        Args:
            log_probs: (B, K) for all classes, or (B, M) for the search's M target classes.

        Returns:
            How many target classes improved.

        Raises:
            RuntimeError: :meth:`ask` was not called first.
            InvalidArgumentError: ``log_probs`` has neither shape.
        """
        return int(self._tell(log_probs))

    def _tell(self, log_probs: torch.Tensor) -> torch.Tensor:
        scores = self._scores(log_probs)
        _check_log_probs(scores)  # values read: a told tensor is the caller's, checked once per tell
        return self._commit(scores)

    def _scores(self, log_probs: torch.Tensor, *, selected: bool = False) -> torch.Tensor:
        """Check the told log-probabilities and keep the target classes' columns, (B, M) on the search device.

        ``selected``: the scores came from the evaluator asked for the target columns, so (B, M) is
        taken as it is even where M = K (every class, in another order than the model's).
        """
        if self._asked is None:
            raise RuntimeError("tell() called without a preceding ask()")
        b, k, m = len(self._asked), self.classifier.num_classes, len(self.classes)
        shape = tuple(log_probs.shape) if isinstance(log_probs, torch.Tensor) else None
        if shape not in ((b, k), (b, m)) or not log_probs.is_floating_point():
            got = shape if shape is not None else type(log_probs).__name__
            want = f"({b}, {k})" if k == m else f"({b}, {k}) or ({b}, {m})"
            raise InvalidArgumentError(
                f"log_probs must be a float tensor of shape {want} for the asked batch, got {got}"
            )
        scores = log_probs.detach().to(self.device)  # an archive never holds on to the caller's autograd graph
        if shape == (b, k) and self._columns is not None and not (selected and k == m):
            scores = scores.index_select(1, self._columns)
        return scores.float()

    def _commit(self, scores: torch.Tensor) -> torch.Tensor:
        genomes = self._asked
        assert genomes is not None
        self._asked = self._rng_before_ask = None
        self._torn = True  # until the generation is whole: an exception in between leaves it unusable
        self.evaluations += len(genomes)
        improved = self._insert(genomes, scores)
        self.generation += 1
        self._hist_evals.append(self.evaluations)
        self._hist_conf.append(self.best_log_probs().detach().clone())
        # whole, but not yet seen by run()'s callbacks (set here, not after step() returns: an interrupt in
        # between would let the Checkpointer save a generation no logger saw and whose time is not counted)
        self._unobserved = True
        self._torn = False
        return improved

    def _check_whole(self) -> None:
        if self._torn:
            raise RuntimeError(
                "the search was interrupted while it inserted a generation, so its state is torn: "
                "load its last checkpoint (load_checkpoint) or start a new search"
            )

    def _step(self, n: int | None = None) -> torch.Tensor:
        genomes = self.ask(n)
        try:
            # the values are checked where they are read anyway (checkpoints, result()): no host read here
            scores = self._verified(
                genomes, self._scores(self.evaluator(genomes, columns=self._columns), selected=True)
            )
        except BaseException:
            self.cancel()
            raise
        return self._commit(scores)

    def _verified(self, genomes: Genomes, scores: torch.Tensor) -> torch.Tensor:
        """The scores a step commits (a subclass may re-score some rows); here ``scores`` as they are."""
        return scores

    def step(self, n: int | None = None) -> int:
        """One generation: ask, score with the evaluator, tell. Returns how many classes improved."""
        return int(self._step(n))

    # -- run ----------------------------------------------------------------------------
    def run(
        self,
        *,
        max_evaluations: int | None = None,
        generations: int | None = None,
        target_confidence: float | None = None,
        max_seconds: float | None = None,
        progress: bool = True,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 50,
        callbacks: Sequence[Callback] = (),
        sync_every: int | None = None,
    ) -> FoolingResult:
        """Run generations until a callback stops the search; the budgets below are callbacks too.

        Budgets count from the start of the search, so calling ``run`` again with a
        larger budget (or with the same ``checkpoint`` after an interruption)
        continues where the search stopped: a run extended or resumed this way is
        bit-for-bit equal to one uninterrupted run with the same seed. A generation
        is never cut short, so the search may pass ``max_evaluations`` by less than
        one generation (one batch; generation 0 evaluates all of ``initial`` or, in
        :class:`SingleClassEvolution`, the whole population).

        Args:
            max_evaluations: stop at the first generation boundary at or past this many evaluations.
            generations: stop after this many generations (generation 0 is the random one).
            target_confidence: stop once every target class has an image at or above it, in (0, 1].
            max_seconds: stop once the search has computed for this long (summed over resumed runs).
            progress: show a tqdm progress bar.
            checkpoint: file to resume from when it exists, and to save to atomically.
            checkpoint_every: generations between checkpoint saves (also saved at the end and on Ctrl-C).
            callbacks: more :class:`~foolbench.search.Callback` objects (loggers, own stop rules). Each
                generation reaches every :class:`~foolbench.search.Checkpointer` after the other callbacks,
                wherever it stands in the list, so a saved generation has been logged.
            sync_every: generations between the target check and progress updates (default 1 on CPU,
                16 on CUDA). The loggers read the device at their own ``every``; ``verify``, a polish and
                each checkpoint save read it too.

        Returns:
            The best image per target class.

        Raises:
            InvalidArgumentError: no budget, or a non-positive budget or a target outside (0, 1].
            CheckpointError: ``checkpoint`` is corrupt, edited or from another configuration.
        """
        if max_evaluations is None and generations is None and max_seconds is None:
            raise InvalidArgumentError("run() needs a budget: give max_evaluations, generations and/or max_seconds")
        if sync_every is None:
            sync_every = 16 if self.device.type == "cuda" else 1
        every = _checks.positive_int("sync_every", sync_every)
        chain: list[Callback] = [
            Budget(max_evaluations=max_evaluations, generations=generations, max_seconds=max_seconds)
        ]
        if target_confidence is not None:
            _checks.real("target_confidence", target_confidence, low=0.0, high=1.0, low_open=True)
            chain.append(StopAtTarget(target_confidence, every=every))
        _checks.boolean("progress", progress)
        if isinstance(callbacks, Callback) or not isinstance(callbacks, Sequence):
            raise InvalidTypeError(f"callbacks must be a sequence of Callback objects, got {type(callbacks).__name__}")
        every_save = _checks.positive_int("checkpoint_every", checkpoint_every)
        saver = None if checkpoint is None else Checkpointer(_path("checkpoint", checkpoint), every=every_save)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise InvalidTypeError(f"callbacks must be foolbench.search.Callback objects, got {type(cb).__name__}")
        if checkpoint is not None and Path(checkpoint).exists():
            # checked on the file's history before it is loaded: a refused checkpoint leaves the search as it was
            state, source = _checkpoint.load(checkpoint), str(checkpoint)
            hist_e, hist_lp, _ = self._saved_history(self._checked_payload(state, source), source)
            self._check_budget(checkpoint, max_evaluations, generations, hist_e)
            if target_confidence is not None:
                self._check_target(checkpoint, target_confidence, every, hist_e, hist_lp)
            self.load_state_dict(state, source=source)
        if progress:
            total = max_evaluations if max_evaluations is not None else None
            if total is None and generations is not None:
                total = generations * self.batch_size
            chain.append(ProgressBar(total=total, every=every, desc=self.method))
        # the checkpointer runs last: a generation it saves has been seen by every logger first
        return self._loop([*chain, *callbacks, *([saver] if saver is not None else [])])

    def _check_budget(
        self, checkpoint: str | Path, max_evaluations: int | None, generations: int | None, hist_e: list[int]
    ) -> None:
        """Refuse a checkpoint (its history ``hist_e``, evaluations after each generation) already past this
        run's budget (a bigger run's: its result is not this run's)."""
        past = []
        generation, evaluations = len(hist_e), (hist_e[-1] if hist_e else 0)
        before_last = hist_e[-2] if len(hist_e) > 1 else 0  # a budget stops at a boundary
        if max_evaluations is not None and before_last >= max_evaluations:
            past.append(f"{evaluations:,} evaluations (max_evaluations={max_evaluations:,})")
        if generations is not None and generation > generations:
            past.append(f"{generation:,} generations (generations={generations:,})")
        if past:
            raise CheckpointError(
                f"{str(checkpoint)!r} holds a search already past this run's budget: {' and '.join(past)}; "
                "give a budget at least as large, another checkpoint path, or delete it to start afresh"
            )

    def _check_target(
        self, checkpoint: str | Path, target_confidence: float, every: int, hist_e: list[int], hist_lp: torch.Tensor
    ) -> None:
        """Refuse a checkpoint (its history: ``hist_e``, ``hist_lp`` (G, M)) that went on past where this run's
        target would have stopped it.

        :class:`StopAtTarget` checks generations ``every``, ``2 * every``, ...; the saved history holds
        each generation's best, so an earlier checked generation with every class at the target means
        an uninterrupted run would have stopped there, with fewer evaluations than the checkpoint's. With a
        classifier at reduced precision or compiled, the history holds the fast scores while the stop waits
        for the float32 ones (:meth:`reported_at`), which the file does not keep: no check.
        """
        if self._reference_eval is not None:
            return
        generation = len(hist_e)
        checked = range(every, generation, every)  # not the last one: the run stops at once there, as it would
        if not checked:
            return
        best = hist_lp[torch.tensor([g - 1 for g in checked])]  # (checks, M)
        met = (best.double() >= math.log(target_confidence)).all(dim=1).nonzero().flatten()  # one read
        if met.numel():
            first = checked[int(met[0])]
            raise CheckpointError(
                f"{str(checkpoint)!r} holds a search that went on past this run's target: every class was at "
                f"target_confidence={target_confidence:g} in generation {first:,} "
                f"({hist_e[first - 1]:,} evaluations), and it holds {generation:,} "
                "generations; give another checkpoint path, or delete it to start afresh"
            )

    def _loop(self, callbacks: list[Callback]) -> FoolingResult:
        for cb in callbacks:
            cb.on_start(self)
        # checkpointers last: one before a logger saved a generation the logger had not yet written, and an
        # interrupt between the two lost its row for good (the resumed run starts after it)
        savers = [cb for cb in callbacks if isinstance(cb, Checkpointer)]
        ordered = [cb for cb in callbacks if not isinstance(cb, Checkpointer)] + savers
        interrupted = True
        try:
            while not any(cb.should_stop(self) for cb in callbacks):
                t0 = time.perf_counter()
                self._step()
                self.seconds += time.perf_counter() - t0
                # until every callback has seen it (_commit set _unobserved), the Checkpointer's final save
                # skips this generation: a resumed run would start after it, and a logger after a failing
                # callback would never log it
                for cb in ordered:
                    if isinstance(cb, Checkpointer):  # last: every other callback has seen the generation
                        self._unobserved = False
                    cb.on_generation(self)
                self._unobserved = False
            interrupted = False
        finally:
            for cb in callbacks:
                cb.on_end(self, interrupted=interrupted)
        return self.result()

    def result(self) -> FoolingResult:
        """The current best image per target class as a :class:`FoolingResult`."""
        if self.generation == 0:
            raise RuntimeError("no generation has been evaluated yet: call run() or step() first")
        self._check_whole()
        _check_log_probs(self.best_log_probs(), source="the evaluator")
        names = self.classifier.class_names
        genomes, confidence, found_at = self._reported()
        return FoolingResult(
            images=self.images(genomes).detach(),
            confidence=confidence,
            classes=torch.tensor(self.classes),
            evaluations=self.evaluations,
            seconds=self.seconds,
            history=History(torch.tensor(self._hist_evals, dtype=torch.long), self._history_confidence()),
            class_names=tuple(names[c] for c in self.classes),
            method=self.method,
            found_at=_checkpoint.snapshot(found_at),  # not the archive's own tensor
            settings=self._config(),
        )

    def _reported(self) -> tuple[Genomes, torch.Tensor, torch.Tensor]:
        """The elites a result reports: (M,) genomes, their (M,) float64 confidence, (M,) ``found_at``.

        A classifier run at reduced precision (``precision="bf16"``) or compiled searches with its fast
        scores; the elites are re-scored by its float32 :meth:`~foolbench.models.BaseClassifier.reference`,
        so a reported 99.99% means the same at every precision.
        """
        genomes, fast = self.best_genomes(), self.best_log_probs()
        confidence = self._reference_confidence(genomes, fast)
        # a niche nobody entered holds a placeholder: confidence 0, as the float32 search reports it
        return genomes, confidence.masked_fill(torch.isneginf(fast).cpu(), 0.0), self._found_at()

    def reported_at(self, confidence: float) -> bool:
        """Whether every class's reported confidence (the one :meth:`result` gives) is at ``confidence`` or above.

        With a float32 classifier these are the search's own scores. A classifier run at reduced precision
        or compiled searches with its fast scores and reports its float32 reference's, which can sit on the
        other side of a target: this re-scores the elites (M images) once the fast scores have all reached
        it, and again only after an elite has changed, so a run never stops at a target its result misses.
        """
        fast = self.best_log_probs()
        if not bool((fast >= log_level(confidence)).all()):
            return False
        if self._reference_eval is None:
            return True
        # keyed on every elite's score (with islands, one of another island than the class's best can change
        # the float32 choice), so a resumed search answers as the uninterrupted one did
        archive = getattr(self, "archive", None)
        elites = archive.fitness if isinstance(archive, ClassArchive) else fast
        cached = self._reported_cache
        if cached is not None and cached[0] == confidence and torch.equal(cached[1], elites):
            return cached[2]
        met = bool((self._reported()[1] >= confidence).all())
        self._reported_cache = (confidence, elites.clone(), met)
        return met

    def _reference_confidence(self, genomes: Genomes, fast: torch.Tensor) -> torch.Tensor:
        """(N,) float64 float32-model confidence of ``genomes[i]`` for the i-th niche's class.

        ``fast`` (N,) are the search's own log-probabilities of them, returned as they are (exponentiated)
        when the classifier is its own float32 reference.
        """
        reference = self._reference_eval
        if reference is None:
            return fast.cpu().double().exp()
        n, m = len(fast), len(self.classes)
        columns = torch.tensor(self.classes)
        scores = reference(genomes, columns=columns).cpu().double()  # (N, M): the target classes' columns
        return scores[torch.arange(n), torch.arange(n) % m].exp()

    def _history_confidence(self) -> torch.Tensor:
        """(G, M) float64 best confidence per class after each generation (kept as log-probs until asked)."""
        if not self._hist_conf:
            return torch.zeros(0, len(self.classes), dtype=torch.float64)
        return torch.stack(self._hist_conf).cpu().double().exp()  # on the CPU first: MPS has no float64

    def _found_at(self) -> torch.Tensor:
        return torch.full((len(self.classes),), self.evaluations, dtype=torch.long)

    # -- checkpoints ----------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        self._check_whole()
        rng = self._rng_before_ask if self._rng_before_ask is not None else self._rng.get_state()
        if self._hist_conf:  # an evaluator's scores are first read here (or in result())
            _check_log_probs(self._hist_conf[-1], source="the evaluator")
        return {
            "generation": self.generation,
            "evaluations": self.evaluations,
            "seconds": self.seconds,
            "rng_state": _checkpoint.snapshot(rng),
            "history_evaluations": torch.tensor(self._hist_evals, dtype=torch.long),
            "history_log_probs": (
                torch.stack(self._hist_conf).cpu() if self._hist_conf else torch.zeros(0, len(self.classes))
            ),
            "search": self._state(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the search exactly: state, RNG, counters, history.

        Between :meth:`ask` and :meth:`tell` the state is the one before the ask:
        the outstanding batch is not part of it.
        """
        return _checkpoint.wrap(fmt=_FORMAT, version=_VERSION, config=self._config(), payload=self._payload())

    def load_state_dict(self, state: dict[str, Any], *, source: str = "state") -> None:
        """Restore a :meth:`state_dict`; raises :class:`CheckpointError` when it does not fit."""
        if self._asked is not None:
            raise RuntimeError("cannot load a checkpoint between ask() and tell(): call cancel() first")
        self._restore(self._checked_payload(state, source), source=source)

    def _checked_payload(self, state: dict[str, Any], source: str) -> dict[str, Any]:
        """The payload of a checkpoint dict of this search's format, version and configuration."""
        if not isinstance(state, dict):
            raise CheckpointError(f"{source!r} must be a dict made by state_dict(), got {type(state).__name__}")
        return _checkpoint.check(
            state,
            fmt=_FORMAT,
            version=_VERSION,
            config=self._config(),
            source=source,
            added=("scoring", "architecture"),
        )

    def _saved_history(self, p: dict[str, Any], source: str) -> tuple[list[int], torch.Tensor, int]:
        """A payload's history, checked: evaluations after each generation, (G, M) best log-probabilities, and
        the evaluations in all."""
        generation = _checkpoint.number(p, "generation", source=source, kind=int)
        evaluations = _checkpoint.number(p, "evaluations", source=source, kind=int)
        hist_e = _checkpoint.field(
            p, "history_evaluations", source=source, shape=(generation,), dtype=torch.long, low=1, high=evaluations
        )
        hist_lp = _checkpoint.field(
            p, "history_log_probs", source=source, shape=(generation, len(self.classes)), high=0.0
        )
        if generation and (int(hist_e[-1]) != evaluations or bool((hist_e.diff() <= 0).any())):
            raise CheckpointError(f"{source!r} history_evaluations do not rise to evaluations={evaluations}")
        return [int(e) for e in hist_e], hist_lp, evaluations

    def _restore(self, p: dict[str, Any], *, source: str) -> None:
        hist_e, hist_lp, evaluations = self._saved_history(p, source)
        generation = len(hist_e)
        seconds = _checkpoint.number(p, "seconds", source=source, kind=float)
        rng_state = _checkpoint.field(p, "rng_state", source=source, dtype=torch.uint8)
        search = p.get("search")
        if not isinstance(search, dict):
            raise CheckpointError(f"{source!r} lacks the search state")
        self._load_state(search, source=source)
        rng = torch.Generator(device=self.device)
        try:
            rng.set_state(rng_state)
        except RuntimeError as err:
            raise CheckpointError(f"{source!r} field 'rng_state' does not fit a {self.device.type} generator") from err
        self._rng = rng
        self.generation, self.evaluations, self.seconds = generation, evaluations, seconds
        self._torn = self._unobserved = False
        self._hist_evals = hist_e
        self._hist_conf = list(hist_lp.to(self.device, torch.float32, copy=True).unbind(0))

    def save_checkpoint(self, path: str | Path) -> Path:
        """Atomically write :meth:`state_dict` to ``path`` (a failed write keeps the old file)."""
        return _checkpoint.save(path, self.state_dict())

    def load_checkpoint(self, path: str | Path) -> None:
        """Resume from a file written by :meth:`save_checkpoint` (loaded with ``weights_only=True``)."""
        self.load_state_dict(_checkpoint.load(path), source=str(path))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(classes={len(self.classes)}, batch_size={self.batch_size}, seed={self.seed}, "
            f"encoding={self.encoding!r}, device={str(self.device)!r}, generation={self.generation}, "
            f"evaluations={self.evaluations})"
        )


class MAPElites(Evolution):
    """MAP-Elites over target classes (Nguyen, Yosinski & Clune, CVPR 2015).

    The archive keeps one elite per target class: the image the classifier is most
    confident belongs to that class. Each generation draws ``batch_size`` parents
    among the elites (``parents``), mutates them, and lets every child compete for
    every class at once. Only the output scores are used (black box), and they
    come from ``evaluator`` (default: render and score here with ``classifier``).
    Fitness is the log-probability, which ranks images the same way as the
    probability but does not saturate in float32 near 100%.

    Args:
        classifier: the model to fool; gives the classes, input shape and bounds.
        encoding: how genomes become images; its ``image_shape`` must equal the classifier's input shape.
        classes: target classes (default: all).
        batch_size: children per generation.
        seed: seeds the search's own generator; the global RNG is never touched.
        parents: ``"unmet-first"`` (default: parents from classes still below 99.99%), ``"uniform"``
            (the paper), ``"curiosity"`` (elites whose children recently entered the archive),
            ``"weakest"`` (rank weights favouring the least-fooled classes), or a
            :class:`~foolbench.search.ParentSelector`.
        mutation_schedule: mutation strength per generation: a number, a
            :class:`~foolbench.search.MutationSchedule` such as :class:`~foolbench.search.StepDecay`,
            or None (strength 1: the encoding's own rates); :class:`~foolbench.search.NearStrength` gives
            the children of elites near the aim a strength of their own. On the 10-class EfficientNet-Lite0 CPU
            proxy, CPPN searches at 2.0 ended higher than at 1 on 8 of 10 seeds
            (``benchmarks/bench_search_ablation.py``); on the MNIST LeNet no strength beat 1.
        evaluator: scores genomes (default :class:`~foolbench.search.LocalEvaluator`); any
            :class:`~foolbench.search.Evaluator` (another process, other GPUs) gives the same result.
        device: where genomes, archive and RNG live (default: the classifier's device). Fix it to keep
            the random stream when the model moves.
        initial: genomes that generation 0 evaluates instead of random ones (e.g. another search's
            elites: a short all-class warm-up, then a focused search); recorded by digest.
        crossover: share of the children bred from two elites before mutation, in [0, 1]: the
            parent drawn by ``parents`` and a mate drawn uniformly from the occupied niches, crossed by
            the encoding's ``crossover`` (both shipped encodings have one). 0 (default) draws nothing
            extra, so the random stream is the one without crossover.
        verify: for a classifier at reduced precision (``precision="bf16"``) or compiled: the children
            whose fast scores beat an elite are scored again by the classifier's float32
            :meth:`~foolbench.models.BaseClassifier.reference` before they compete, so the archive
            holds float32 scores only and a lucky bf16 rounding never sits in it as an elite. The fast
            model screens every child, the float32 one decides (``verifications`` counts its images;
            ``evaluations`` counts children, as without it). Reads the candidate count back from the
            device once per generation. Applies to :meth:`step` and :meth:`run`; with a float32
            classifier it changes nothing.
        polish: a :class:`~foolbench.search.GradientPolish`: every ``polish.every`` generations, the
            elites between ``polish.above`` and ``polish.below`` are moved by gradient steps on their
            genes through the classifier's float32 reference (white box: the
            classifier must be differentiable; the encoding must offer ``genes`` / ``render_genes`` /
            ``with_genes``, as both shipped ones do) and join that generation's batch in place of as many
            mutants. ``gradient_images`` counts the images of those steps. None (default): black box.
        islands: independent archives, each with one elite per class (default 1: the paper's single
            archive); ``archive`` then holds ``islands`` x M niches, island by island. A child competes
            only in its parent's island (generation 0 deals its random genomes out in turn, so
            ``islands`` <= ``batch_size``; ``initial`` genomes compete in every island). ``parents``
            sees each class's best over the islands, so with the selectors that favour unmet classes a
            class that one island has fooled draws no parents in any, nor is it polished; a
            :class:`~foolbench.search.Focus` selector's niches are taken in every island. Crossover
            mates come from every island (the one exchange between them). The result, history and
            ``found_at`` give each class's best over the islands (with a bf16 or compiled model the
            result's island is the one best in float32, the history's the one best in the fast scores).
            Several lineages per class guard against a class stuck on one: on the 10-class
            EfficientNet-Lite0 CPU proxy (strength 2, near children refined), 2 islands met the
            median-99% aim on seeds 0-6 at the evaluations of ten minutes (one archive: 4 of them; 2
            islands were chosen on these seeds), and on 3 of the 5 new seeds 7-11 in ten timed minutes
            (one archive at the same evaluations: 2 of 5). Three islands (with the polish, ten timed
            minutes, seeds 7-12) left fewer classes below 90% but brought fewer to 99% (3 of 6 seeds
            met the aim, against 5 with two): each island gets a third of the budget.

    Raises:
        InvalidArgumentError: unknown or repeated classes, empty class list, shape mismatch, bad batch
            size, seed or device, empty ``initial``, ``islands`` not an int in [1, batch_size],
            ``Focus`` niches beyond the classes (with islands); ``crossover`` outside [0, 1] or > 0 with an encoding that has no
            ``crossover`` method; a ``NearStrength(refine=...)`` schedule with an
            encoding that has no ``refine`` method.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> search = fb.search.MAPElites(clf, fb.encodings.DirectEncoding((1, 28, 28)), batch_size=64, seed=0)
        >>> res = search.run(generations=3, progress=False)
        >>> res.images.shape, res.confidence.shape, res.evaluations
        (torch.Size([10, 1, 28, 28]), torch.Size([10]), 192)
        >>> two = fb.search.MAPElites(clf, fb.encodings.DirectEncoding((1, 28, 28)), batch_size=64, seed=0, islands=2)
        >>> len(two.archive), two.run(generations=3, progress=False).confidence.shape  # the best of 2 per class
        (20, torch.Size([10]))
    """

    method = "map_elites"

    def __init__(
        self,
        classifier: Classifier,
        encoding: Encoding,
        *,
        classes: list[int] | None = None,
        batch_size: int = 256,
        seed: int | None = None,
        parents: str | ParentSelector = "unmet-first",
        mutation_schedule: float | MutationSchedule | None = None,
        evaluator: Evaluator | None = None,
        device: str | torch.device | None = None,
        initial: Genomes | None = None,
        crossover: float = 0.0,
        verify: bool = False,
        polish: GradientPolish | None = None,
        islands: int = 1,
    ) -> None:
        k = check_classifier(classifier).num_classes
        chosen = list(range(k)) if classes is None else _checks.class_list("classes", classes, num_classes=k)
        super().__init__(
            classifier,
            encoding,
            classes=chosen,
            batch_size=batch_size,
            seed=seed,
            evaluator=evaluator,
            device=device,
            mutation_schedule=mutation_schedule,
        )
        # a copy: a stateful selector (curiosity's scores) must not carry one search's state into another
        self.parents = copy.deepcopy(parent_selector(parents))
        self.islands = _checks.positive_int("islands", islands)
        if self.islands > self.batch_size:
            raise InvalidArgumentError(
                f"islands ({self.islands}) must be at most batch_size ({self.batch_size}): generation 0 deals its "
                "genomes out to the islands in turn, and an island without one would stay empty"
            )
        if self.islands > 1 and isinstance(self.parents, Focus):  # its niches are classes: in every island
            m = len(chosen)
            if max(self.parents.niches) >= m:
                raise InvalidArgumentError(
                    f"Focus niches go up to {max(self.parents.niches)} but the search has {m} classes: "
                    "give positions inside its class list"
                )
            self.parents.niches = [n + i * m for i in range(self.islands) for n in self.parents.niches]
        # island i holds niches i*M .. i*M + M - 1: the target classes again, in the same order
        self.archive = ClassArchive(torch.tensor(chosen, device=self.device).repeat(self.islands), encoding)
        self._picked: torch.Tensor | None = None
        self.initial = initial
        if initial is not None and (len(initial) == 0 or not hasattr(initial, "__getitem__")):
            raise InvalidArgumentError("initial must be a non-empty batch of genomes (e.g. another search's elites)")
        validate = getattr(encoding, "validate", None)
        if initial is not None and callable(validate):  # checked now, where the message can name it
            try:
                validate(initial)
            except (InvalidArgumentError, InvalidTypeError) as err:
                raise type(err)(f"initial does not fit the encoding: {err}") from None
        if initial is not None and _device_of(initial) != self.device and callable(getattr(initial, "to", None)):
            self.initial = initial.to(self.device)  # the archive, parents and RNG live on the search's device
        self.crossover = _checks.real("crossover", crossover, low=0.0, high=1.0)
        self.verify = _checks.boolean("verify", verify)
        self.verifications = 0
        if polish is not None and not isinstance(polish, GradientPolish):
            raise InvalidTypeError(f"polish must be a GradientPolish or None, got {type(polish).__name__}")
        if polish is not None and not isinstance(encoding, Differentiable):
            raise InvalidArgumentError(
                f"polish needs an encoding with gene_bounds, genes(), render_genes() and with_genes() "
                f"(as CPPNEncoding and DirectEncoding have); {type(encoding).__name__} has not"
            )
        self.polish = polish
        self.gradient_images = 0  # images a polish sent through the model (forward and backward)
        self._polished = 0  # of the batch asked last: counted when it is told
        # per niche, the found_at of the elite last polished there (-1: none yet). The polish is
        # deterministic, so an elite it could not improve would come out the same again: it waits
        # until evolution (or a polish that worked) replaces it
        self._polish_seen = torch.full((len(self.archive),), -1, dtype=torch.long, device=self.device)
        self._polish_pending: tuple[torch.Tensor, torch.Tensor] | None = None
        # cuDNN plans its convolutions per input shape, and the number of improvers changes every
        # generation: on an H100 each new size cost about a second (296 vs 11,651 eval/s), so on CUDA
        # the children re-scored are padded to a power of two (a handful of shapes)
        self._pad_rescoring = self.device.type == "cuda"
        refines = isinstance(self.schedule, NearStrength) and self.schedule.refine is not None
        if refines and not callable(getattr(encoding, "refine", None)):
            raise InvalidArgumentError(
                f"mutation_schedule={self.schedule!r} refines the children of near elites: it needs an encoding "
                f"with a refine(genomes, generator, scale=) method (CPPNEncoding); {type(encoding).__name__} has none"
            )
        if self.crossover > 0 and not callable(getattr(encoding, "crossover", None)):
            raise InvalidArgumentError(
                f"crossover={self.crossover:g} needs an encoding with a crossover(genomes, mates, generator, "
                f"probability=) method; {type(encoding).__name__} has none"
            )

    def ask(self, n: int | None = None) -> Genomes:
        """Like :meth:`Evolution.ask`; generation 0 evaluates ``initial`` when the search was given one."""
        if self.generation == 0 and self.initial is not None and self._asked is None:
            self._check_whole()
            if n is not None and _checks.positive_int("n", n) != len(self.initial):
                raise InvalidArgumentError(
                    f"n must be the size of initial ({len(self.initial)}) in generation 0, which evaluates it, got {n}"
                )
            self._asked, self._rng_before_ask = self.initial, self._rng.get_state()
            return self.initial
        if self.generation == 0 and self.islands > 1 and n is not None and _checks.positive_int("n", n) < self.islands:
            raise InvalidArgumentError(
                f"n must be at least islands ({self.islands}) in generation 0, which deals its genomes out to the "
                f"islands in turn (an island without one would stay empty), got {n}"
            )
        return super().ask(n)

    def _config(self) -> dict[str, Any]:
        config = {**super()._config(), "parents": self.parents.config()}
        if self.initial is not None:
            config["initial"] = _checkpoint.digest(self.encoding.genomes_to_state(self.initial))[:16]
        if self.crossover > 0:  # absent at 0, so checkpoints from before the option still resume
            config["crossover"] = self.crossover
        if self.verify:
            config["verify"] = True
        if self.polish is not None:
            config["polish"] = self.polish.config()
        if self.islands > 1:  # absent at 1, so checkpoints from before the option still resume
            config["islands"] = self.islands
        return config

    def _propose(self, n: int) -> Genomes:
        children = self._mutants(n)
        self._polished, self._polish_pending = 0, None
        if self.polish is not None and self.polish.due(
            self.generation, evaluations=self.evaluations, seconds=self.seconds
        ):
            children = self._polish(children)
        return children

    def _polish(self, children: Genomes) -> Genomes:
        """Put the polished elites below the aim (nearest first) in the first rows of ``children``."""
        assert self.polish is not None and self.archive.genomes is not None and self._picked is not None
        fitness, found_at = self.archive.fitness, self.archive.found_at
        below = self.archive.occupied & (fitness < self.polish.below_log_prob) & (fitness >= self.polish.above_log_prob)
        below &= found_at != self._polish_seen  # not the same elite again: same genes, same polish
        if self.islands > 1:  # nor a class another island has brought to the aim
            below &= self._class_best_in_every_island() < self.polish.below_log_prob
        k = min(int(below.sum()), len(children), self.polish.most or len(children))  # one read per polish
        if k == 0:
            return children
        nearest = torch.argsort(
            torch.where(below, fitness, torch.full_like(fitness, -math.inf)),
            descending=True,
            stable=True,
        )[:k]
        model = self.classifier.reference()  # float32 and eager: compiled graphs are for scoring
        where = getattr(model, "device", self.device)
        polished, _ = self.polish(
            model,
            self.encoding,  # type: ignore[arg-type]
            self.archive.genomes[nearest].to(where),
            self.archive.classes[nearest],
            bounds=_bounds(self.classifier),
        )
        children[torch.arange(k, device=self.device)] = polished.to(self.device)
        self._picked[:k] = nearest  # their parents, for a selector's feedback
        self._polished = k * self.polish.steps
        self._polish_pending = (nearest, found_at[nearest])  # recorded when the batch is told
        return children

    def _mutants(self, n: int) -> Genomes:
        if self.generation == 0 or not isinstance(self.schedule, NearStrength):
            return super()._propose(n)
        parents = self._parents(n)
        assert self._picked is not None
        # on the device: which children descend from an elite already near the aim (no host read)
        near = self.archive.fitness[self._picked] >= self.schedule.near_log_prob
        strong = self.encoding.mutate(parents, self._rng, strength=self.schedule(self.generation))
        if self.schedule.refine is None:
            gentle = self.encoding.mutate(parents, self._rng, strength=self.schedule.near_strength)
        else:
            gentle = self.encoding.refine(parents, self._rng, scale=self.schedule.refine)  # type: ignore[attr-defined]
        children: Genomes = select_rows(near, gentle, strong)
        return children

    def _verified(self, genomes: Genomes, scores: torch.Tensor) -> torch.Tensor:
        if not self.verify:
            return scores
        verifier = self._reference_eval
        if verifier is None:  # float32 already: nothing to verify
            return scores
        rows = (self._island_scores(scores) > self.archive.fitness).any(dim=1).nonzero().flatten()
        n = int(rows.numel())
        if n == 0:
            return scores
        if self._pad_rescoring:
            rows = pad_rows(rows, len(genomes))
        exact = verifier(genomes[rows], columns=self._columns).to(self.device).float()[:n]
        self.verifications += n
        return scores.index_put((rows[:n],), exact)

    def _island_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """(B, islands * M) scores: each child's (B, M) scores in its parent's island, -inf elsewhere.

        A child's island is its parent's niche // M (``_picked``: mutants, polished elites). Generation
        0 has no parents: its random row j goes to island j % islands, and ``initial`` genomes (another
        search's elites, a warm start) compete in every island.
        """
        if self.islands == 1:
            return scores
        b, m = scores.shape
        if self.generation == 0 and self.initial is not None:
            return scores.repeat(1, self.islands)
        picked = self._picked
        if self.generation > 0 and picked is not None and picked.shape[0] == b:
            island = picked.to(scores.device) // m
        else:
            island = torch.arange(b, device=scores.device) % self.islands
        niche_island = torch.arange(self.islands, device=scores.device).repeat_interleave(m)
        return scores.repeat(1, self.islands).masked_fill(island[:, None] != niche_island[None, :], -math.inf)

    def _best_over_islands(self, per_niche: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M,) best of a (islands x M,) per-niche value over the islands, and (M,) the niche holding it."""
        m = len(self.classes)
        best, island = per_niche.view(self.islands, m).max(dim=0)
        return best, island * m + torch.arange(m, device=island.device)

    def _class_best(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(M,) best log-probability per class over the islands, and (M,) the archive niche holding it."""
        return self._best_over_islands(self.archive.fitness)

    def _class_best_in_every_island(self) -> torch.Tensor:
        """(islands x M,) each niche's class best over the islands: what selection and polish judge by."""
        return self._class_best()[0].repeat(self.islands)

    def _parents(self, n: int) -> Genomes:
        fitness = self.archive.fitness
        if self.islands > 1:  # a class is met (or weak) by its best over the islands
            fitness = self._class_best_in_every_island()
        pick = self.parents(fitness, self.archive.occupied, n, self._rng)
        self._picked = pick
        assert self.archive.genomes is not None
        parents = self.archive.genomes[pick]
        if self.crossover > 0:
            mates = self.archive.genomes[weighted_draw(self.archive.occupied, n, self._rng)]
            parents = self.encoding.crossover(  # type: ignore[attr-defined]
                parents, mates, self._rng, probability=self.crossover
            )
        return parents

    def _insert(self, genomes: Genomes, scores: torch.Tensor) -> torch.Tensor:
        self.gradient_images += self._polished
        self._polished = 0
        if self._polish_pending is not None:
            polished_niches, their_found_at = self._polish_pending
            self._polish_seen[polished_niches] = their_found_at
            self._polish_pending = None
        before = self._class_best()[0] if self.islands > 1 else None
        scores = self._island_scores(scores)
        status = self.archive.add_scores(genomes, scores, evaluations=self.evaluations)  # NaN ranks last there
        feedback = getattr(self.parents, "feedback", None)
        if callable(feedback) and self._picked is not None and self._picked.shape[0] == scores.shape[0]:
            # a child succeeded when it won at least one niche it improved (a NaN child wins none, as in the archive)
            winners = torch.where(scores.isnan(), -torch.inf, scores).argmax(dim=0)
            won = torch.zeros(scores.shape[0], device=scores.device)
            won.scatter_add_(0, winners, (status > 0).float().to(scores.device))
            feedback(self._picked, won > 0, num_niches=len(self.archive))
        self._picked = None
        if before is not None:  # classes whose best over the islands rose
            return (self._class_best()[0] > before).sum()
        return (status > 0).sum()

    def best_log_probs(self) -> torch.Tensor:
        return self.archive.fitness if self.islands == 1 else self._class_best()[0]

    def best_genomes(self) -> Genomes:
        if self.archive.genomes is None:
            raise RuntimeError("the archive is empty: run at least one generation")
        if self.islands == 1:  # a copy: the archive goes on changing in place (and a caller may write into it)
            return self.archive.genomes[torch.arange(len(self.classes), device=self.device)]
        return self.archive.genomes[self._class_best()[1]]

    def _found_at(self) -> torch.Tensor:
        return self.archive.found_at if self.islands == 1 else self.archive.found_at[self._class_best()[1]]

    def _reported(self) -> tuple[Genomes, torch.Tensor, torch.Tensor]:
        """With islands and a fast model, each class's elite is the island's best in float32.

        The fast scores chose the islands' elites; which island holds a class's best is decided again by
        the float32 reference (its elites re-scored, K x M images), so the image reported is the one whose
        float32 confidence is highest, and its confidence the one reported.
        """
        if self.islands == 1 or self._reference_eval is None:
            return super()._reported()
        genomes = self.archive.genomes
        assert genomes is not None
        confidence = self._reference_confidence(genomes, self.archive.fitness)
        # an empty niche (every child of its island scored -inf) holds a placeholder genome: never chosen
        confidence = confidence.masked_fill(~self.archive.occupied.cpu(), -1.0)
        best, niche = self._best_over_islands(confidence)
        niche = niche.to(self.device)
        return genomes[niche], best.clamp(min=0.0), self.archive.found_at[niche]  # no island entered: 0

    def _state(self) -> dict[str, Any]:
        state = self.archive.state_dict()
        selector_state = getattr(self.parents, "state_dict", None)
        if callable(selector_state):
            state["selector"] = selector_state()
        if self.verify:
            state["verifications"] = self.verifications
        if self.polish is not None:
            state["gradient_images"] = self.gradient_images
            state["polish_seen"] = _checkpoint.snapshot(self._polish_seen)
        return state

    def _load_state(self, state: dict[str, Any], *, source: str) -> None:
        self.archive.load_state_dict(state, source=source)
        verifications = state.get("verifications", 0)
        if not isinstance(verifications, int) or isinstance(verifications, bool) or verifications < 0:
            raise CheckpointError(f"{source!r} verifications must be a count >= 0, got {verifications!r}")
        self.verifications = verifications
        gradient_images = state.get("gradient_images", 0)
        if not isinstance(gradient_images, int) or isinstance(gradient_images, bool) or gradient_images < 0:
            raise CheckpointError(f"{source!r} gradient_images must be a count >= 0, got {gradient_images!r}")
        self.gradient_images = gradient_images
        m = len(self.archive)
        seen = state.get("polish_seen")  # absent before it was kept: every elite may be polished again
        self._polish_seen = (
            torch.full((m,), -1, dtype=torch.long)
            if seen is None
            else _checkpoint.field(state, "polish_seen", source=source, shape=(m,), dtype=torch.long, low=-1)
        ).to(self.device, copy=True)
        load = getattr(self.parents, "load_state_dict", None)
        if callable(load):
            selector = state.get("selector", {})
            if not isinstance(selector, dict):
                raise CheckpointError(f"{source!r} selector state must be a dict")
            load(selector, self.device)


class RandomSearch(MAPElites):
    """Random sampling at the search's budget: the baseline that evolution has to beat.

    Every generation is a fresh batch from ``encoding.sample`` (what MAP-Elites evaluates
    in generation 0); nothing is mutated or inherited. The archive keeps, per target
    class, the most confident image seen, so the result, history, budgets, checkpoints
    and ``verify`` work as in :class:`MAPElites`, and the two compare at equal
    evaluations: ``evaluations_to(0.99)`` of each says what evolution buys.

    Args:
        classifier: the model to fool.
        encoding: how genomes become images (its ``sample`` is the distribution searched).
        classes: target classes (default: all).
        batch_size: random genomes per generation.
        seed: seeds the search's own generator.
        evaluator: scores genomes (default :class:`~foolbench.search.LocalEvaluator`).
        device: where genomes, archive and RNG live (default: the classifier's device).
        verify: re-score in float32 the samples that beat an elite (see :class:`MAPElites`).

    Raises:
        InvalidArgumentError: as :class:`MAPElites`.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> rs = fb.search.RandomSearch(clf, fb.encodings.CPPNEncoding((1, 28, 28)), batch_size=64, seed=0)
        >>> res = rs.run(max_evaluations=256, progress=False)
        >>> res.evaluations, res.settings["method"]
        (256, 'random_search')
    """

    method = "random_search"

    def __init__(
        self,
        classifier: Classifier,
        encoding: Encoding,
        *,
        classes: list[int] | None = None,
        batch_size: int = 256,
        seed: int | None = None,
        evaluator: Evaluator | None = None,
        device: str | torch.device | None = None,
        verify: bool = False,
    ) -> None:
        super().__init__(
            classifier,
            encoding,
            classes=classes,
            batch_size=batch_size,
            seed=seed,
            evaluator=evaluator,
            device=device,
            verify=verify,
        )

    def _propose(self, n: int) -> Genomes:
        genomes: Genomes = self.encoding.sample(n, self._rng)
        return genomes

    def _config(self) -> dict[str, Any]:
        config = super()._config()
        del config["parents"], config["mutation_schedule"]  # neither is used
        return config


class SingleClassEvolution(Evolution):
    """The paper's baseline: a plain (mu + lambda) evolutionary algorithm for one target class.

    A population of ``population`` genomes; each generation, ``batch_size``
    children are mutated from parents chosen by binary tournament, and the best
    ``population`` of parents and children survive. Same ask/tell/run protocol
    and result as :class:`MAPElites`.

    Args:
        classifier: the model to fool.
        encoding: genome to image.
        target: the one target class.
        population: survivors per generation (default ``batch_size``).
        batch_size: children per generation.
        seed: seeds the search's own generator.
        mutation_schedule: mutation strength per generation (see :class:`MAPElites`; not
            :class:`~foolbench.search.NearStrength`, which needs MAPElites' archive).
        evaluator: scores genomes (see :class:`MAPElites`).
        device: where genomes and RNG live (default: the classifier's device).

    Raises:
        InvalidArgumentError: ``target`` not one class, bad sizes or seed, a ``NearStrength`` schedule.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> evo = fb.search.SingleClassEvolution(clf, fb.encodings.DirectEncoding((1, 28, 28)), target=3,
        ...                                      batch_size=32, seed=0)
        >>> evo.run(generations=3, progress=False).classes.tolist()
        [3]
    """

    method = "single_class"

    def __init__(
        self,
        classifier: Classifier,
        encoding: Encoding,
        *,
        target: int,
        population: int | None = None,
        batch_size: int = 256,
        seed: int | None = None,
        mutation_schedule: float | MutationSchedule | None = None,
        evaluator: Evaluator | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        clf = check_classifier(classifier)
        chosen = _checks.class_list(
            "target", [target] if isinstance(target, int) else target, num_classes=clf.num_classes
        )
        if len(chosen) != 1:
            raise InvalidArgumentError(f"target must be one class index, got {target!r}")
        super().__init__(
            clf,
            encoding,
            classes=chosen,
            batch_size=batch_size,
            seed=seed,
            evaluator=evaluator,
            device=device,
            mutation_schedule=mutation_schedule,
        )
        if isinstance(self.schedule, NearStrength):  # it reads an archive's elites: a population has none
            raise InvalidArgumentError(
                "mutation_schedule=NearStrength(...) needs MAPElites (the confidence of each parent's niche); "
                "give SingleClassEvolution a number or a per-generation schedule"
            )
        self.population = _checks.positive_int("population", population if population is not None else batch_size)
        self._pop: Genomes | None = None
        self._fit = torch.empty(0, device=self.device)
        self._found = torch.zeros((), dtype=torch.long, device=self.device)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "population": self.population}

    def ask(self, n: int | None = None) -> Genomes:
        # generation 0 samples the whole initial population when no size is forced
        if self.generation == 0:
            if n is None:
                n = max(self.population, self.batch_size)
            elif _checks.positive_int("n", n) < self.population:
                raise InvalidArgumentError(
                    f"n must be at least population ({self.population}) in generation 0, which samples the "
                    f"initial population, got {n}"
                )
        return super().ask(n)

    def _parents(self, n: int) -> Genomes:
        assert self._pop is not None
        size = self._fit.shape[0]
        a = torch.randint(0, size, (n,), generator=self._rng, device=self.device)
        b = torch.randint(0, size, (n,), generator=self._rng, device=self.device)
        winner = torch.where(self._fit[a] >= self._fit[b], a, b)
        return self._pop[winner]

    def _insert(self, genomes: Genomes, scores: torch.Tensor) -> torch.Tensor:
        fresh = scores[:, 0].nan_to_num(nan=-torch.inf)  # a NaN score would rank first and stay forever
        old_best = self._fit.max() if self._fit.numel() else torch.tensor(-torch.inf, device=self.device)
        if self._pop is None:
            keep = torch.argsort(fresh, descending=True, stable=True)[: self.population]
            self._pop, self._fit = genomes[keep], fresh[keep]
        else:
            size = self._fit.shape[0]
            both = torch.cat([self._fit, fresh])
            top = torch.topk(both, size, sorted=False).indices
            # index_fill_ takes the value as a scalar argument: ``survivors[top] = True`` copies a host
            # tensor to the device and waits for it (seen on an H100 under sync-debug mode)
            survivors = torch.zeros(both.shape[0], dtype=torch.bool, device=self.device).index_fill_(0, top, True)
            # the k-th losing slot (in slot order) takes the k-th winning child (in batch order), written
            # as a gather and a masked select so nothing is read back to the host
            losers = ~survivors[:size]
            winners_first = torch.argsort((~survivors[size:]).to(torch.uint8), stable=True)
            source = winners_first[(torch.cumsum(losers, 0) - 1).clamp_(min=0)]
            self._pop = select_rows(losers, genomes[source], self._pop)
            self._fit = torch.where(losers, fresh[source], self._fit)
        improved = self._fit.max() > old_best
        self._found = torch.where(improved, self.evaluations, self._found)  # when the best image was found
        return improved.long()

    def _found_at(self) -> torch.Tensor:
        found = int(self._found)  # -1: resumed from a checkpoint that did not keep it
        return torch.tensor([self.evaluations if found < 0 else found], dtype=torch.long)

    def best_log_probs(self) -> torch.Tensor:
        return self._fit.max().reshape(1)

    def best_genomes(self) -> Genomes:
        if self._pop is None:
            raise RuntimeError("the population is empty: run at least one generation")
        return self._pop[self._fit.argmax().reshape(1)]

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "fitness": _checkpoint.snapshot(self._fit),
            "found_at": _checkpoint.snapshot(self._found),
        }
        if self._pop is not None:
            state["genomes"] = {
                k: _checkpoint.snapshot(v) for k, v in self.encoding.genomes_to_state(self._pop).items()
            }
        return state

    def _load_state(self, state: dict[str, Any], *, source: str) -> None:
        fit = _checkpoint.field(state, "fitness", source=source, shape=(-1,), dtype=torch.float32, high=0.0)
        genomes = state.get("genomes")
        if fit.numel() and not isinstance(genomes, dict):
            raise CheckpointError(f"{source!r} lacks the population's genomes")
        pop = (
            None
            if genomes is None
            else _checkpoint.genomes(self.encoding, genomes, device=self.device, count=fit.shape[0], source=source)
        )
        self._fit, self._pop = fit.to(self.device, copy=True), pop
        found = state.get("found_at")  # absent in checkpoints before it was kept: the evaluations then
        if found is not None and (not isinstance(found, torch.Tensor) or found.dtype != torch.long or found.dim()):
            raise CheckpointError(f"{source!r} field 'found_at' must be a long scalar tensor")
        self._found = (torch.tensor(-1) if found is None else found).to(self.device, copy=True)
