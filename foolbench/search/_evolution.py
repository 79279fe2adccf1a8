"""Black-box evolution of fooling images: MAP-Elites and a single-class baseline."""

from __future__ import annotations

import math
import secrets
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from foolbench import _checks, _io
from foolbench.encodings import Encoding, Genomes
from foolbench.errors import CheckpointError, InvalidArgumentError, InvalidTypeError
from foolbench.models import Classifier, check_classifier
from foolbench.search._archive import ClassArchive
from foolbench.search._result import FoolingResult, History

__all__ = ["MAPElites", "SingleClassEvolution"]

_FORMAT = "foolbench.evolution"
_VERSION = 1


def _progress(total: int | None, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="eval", dynamic_ncols=True, leave=False)


class _Evolution(ABC):
    """The ask/tell loop, budgets, history and checkpoints shared by evolutionary searches."""

    method = "evolution"

    def __init__(
        self, classifier: Classifier, encoding: Encoding, *, classes: list[int], batch_size: int, seed: int | None
    ) -> None:
        classifier = check_classifier(classifier)
        for attr in ("image_shape", "sample", "mutate", "render"):
            if not hasattr(encoding, attr):
                raise InvalidTypeError(f"encoding must follow foolbench.encodings.Encoding (missing {attr!r})")
        if tuple(encoding.image_shape) != tuple(classifier.input_shape):
            raise InvalidArgumentError(
                f"encoding.image_shape {tuple(encoding.image_shape)} must equal the "
                f"classifier's input_shape {tuple(classifier.input_shape)}"
            )
        self.classifier = classifier
        self.encoding = encoding
        self.classes = classes
        self.batch_size = _checks.positive_int("batch_size", batch_size)
        self.seed = secrets.randbits(62) if seed is None else _checks.positive_int("seed", seed, minimum=0)
        self.device = classifier.device
        self._rng = torch.Generator(device=self.device).manual_seed(self.seed)
        self.generation = 0
        self.evaluations = 0
        self.seconds = 0.0
        self._asked: Genomes | None = None
        self._hist_evals: list[int] = []
        self._hist_conf: list[torch.Tensor] = []
        # log of the target confidence while run() has one: parents come from classes below it
        self.focus: float | None = None

    # -- subclass hooks ---------------------------------------------------------------
    @abstractmethod
    def _parents(self, n: int) -> Genomes: ...

    @abstractmethod
    def _insert(self, genomes: Genomes, log_probs: torch.Tensor) -> int: ...

    @abstractmethod
    def best_log_probs(self) -> torch.Tensor:
        """(M,) log-probability of the best genome found for each target class."""

    @abstractmethod
    def best_genomes(self) -> Genomes:
        """The best genome found for each target class, (M,) batch."""

    @abstractmethod
    def _state(self) -> dict[str, Any]: ...

    @abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None: ...

    def _config(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "classes": list(self.classes),
            "batch_size": self.batch_size,
            "seed": self.seed,
            "encoding": self.encoding.config(),
            "input_shape": list(self.classifier.input_shape),
            "num_classes": self.classifier.num_classes,
        }

    # -- ask / tell ---------------------------------------------------------------------
    def ask(self, n: int | None = None) -> Genomes:
        """Propose ``n`` (default ``batch_size``) new genomes: random ones in generation 0, mutants after.

        Raises:
            RuntimeError: the previous batch was not passed to :meth:`tell` yet.
        """
        if self._asked is not None:
            raise RuntimeError("ask() called twice: pass the log-probabilities of the last batch to tell() first")
        n = self.batch_size if n is None else _checks.positive_int("n", n)
        if self.generation == 0:
            genomes = self.encoding.sample(n, self._rng)
        else:
            genomes = self.encoding.mutate(self._parents(n), self._rng, generation=self.generation)
        self._asked = genomes
        return genomes

    def images(self, genomes: Genomes) -> torch.Tensor:
        """Render genomes into the classifier's raw input range (its ``bounds``)."""
        img = self.encoding.render(genomes)
        lower, upper = self.classifier.bounds
        return img if (lower, upper) == (0.0, 1.0) else lower + (upper - lower) * img

    def tell(self, log_probs: torch.Tensor) -> int:
        """Insert the last asked batch with the (B, K) log-probabilities the classifier gave it.

        Returns:
            How many target classes improved.

        Raises:
            RuntimeError: :meth:`ask` was not called first.
            InvalidArgumentError: ``log_probs`` does not have shape (B, K).
        """
        if self._asked is None:
            raise RuntimeError("tell() called without a preceding ask()")
        b = len(self._asked)
        if not isinstance(log_probs, torch.Tensor) or tuple(log_probs.shape) != (b, self.classifier.num_classes):
            got = tuple(log_probs.shape) if isinstance(log_probs, torch.Tensor) else type(log_probs).__name__
            raise InvalidArgumentError(
                f"log_probs must have shape ({b}, {self.classifier.num_classes}) for the asked batch, got {got}"
            )
        genomes, self._asked = self._asked, None
        self.evaluations += b
        improved = self._insert(genomes, log_probs)
        self.generation += 1
        self._hist_evals.append(self.evaluations)
        self._hist_conf.append(self.best_log_probs().detach().clone())
        return improved

    def step(self, n: int | None = None) -> int:
        """One generation: ask, render, evaluate with ``classifier.log_probs``, tell."""
        genomes = self.ask(n)
        try:
            log_probs = self.classifier.log_probs(self.images(genomes))
        except BaseException:
            self._asked = None
            raise
        return self.tell(log_probs)

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
    ) -> FoolingResult:
        """Run until a budget is spent or every target class reaches ``target_confidence``.

        Budgets count from the start of the search, so calling ``run`` again with a
        larger budget (or with the same ``checkpoint`` after an interruption)
        continues where the search stopped; a resumed run is bit-for-bit equal to an
        uninterrupted one with the same seed.

        Args:
            max_evaluations: stop after this many classifier evaluations (the last batch is trimmed).
            generations: stop after this many generations (generation 0 is the random one).
            target_confidence: stop once every target class has an image at or above it, in (0, 1].
            max_seconds: stop once the search has computed for this long (summed over resumed runs).
            progress: show a tqdm progress bar.
            checkpoint: file to resume from when it exists, and to save to atomically.
            checkpoint_every: generations between checkpoint saves (also saved at the end and on Ctrl-C).

        Returns:
            The best image per target class.

        Raises:
            InvalidArgumentError: no budget, or a non-positive budget or a target outside (0, 1].
            CheckpointError: ``checkpoint`` is corrupt or from another configuration.
        """
        if max_evaluations is None and generations is None and max_seconds is None:
            raise InvalidArgumentError("run() needs a budget: give max_evaluations, generations and/or max_seconds")
        if max_seconds is not None:
            _checks.real("max_seconds", max_seconds, low=0.0, low_open=True)
        _checks.optional_positive_int("max_evaluations", max_evaluations)
        _checks.optional_positive_int("generations", generations)
        _checks.positive_int("checkpoint_every", checkpoint_every)
        target_log = None
        if target_confidence is not None:
            _checks.real("target_confidence", target_confidence, low=0.0, high=1.0, low_open=True)
            target_log = math.log(target_confidence)
        if checkpoint is not None and Path(checkpoint).exists():
            self.load_checkpoint(checkpoint)
        self.focus = target_log
        total = max_evaluations if max_evaluations is not None else None
        if total is None and generations is not None:
            total = generations * self.batch_size
        bar = _progress(total, progress, self.method)
        bar.update(self.evaluations if total is None else min(self.evaluations, total))
        since_save = 0
        try:
            while True:
                if max_evaluations is not None and self.evaluations >= max_evaluations:
                    break
                if generations is not None and self.generation >= generations:
                    break
                if max_seconds is not None and self.seconds >= max_seconds:
                    break
                if target_log is not None and self.generation > 0 and bool((self.best_log_probs() >= target_log).all()):
                    break
                n = self.batch_size
                if max_evaluations is not None:
                    n = min(n, max_evaluations - self.evaluations)
                t0 = time.perf_counter()
                self.step(n)
                self.seconds += time.perf_counter() - t0
                if progress:
                    bar.update(n)
                    bar.set_postfix(median=f"{float(self.best_log_probs().median().exp()):.6f}", refresh=False)
                since_save += 1
                if checkpoint is not None and since_save >= checkpoint_every:
                    self.save_checkpoint(checkpoint)
                    since_save = 0
        except KeyboardInterrupt:
            if checkpoint is not None:
                self.save_checkpoint(checkpoint)
            raise
        finally:
            bar.close()
        if checkpoint is not None and since_save:
            self.save_checkpoint(checkpoint)
        return self.result()

    def result(self) -> FoolingResult:
        """The current best image per target class as a :class:`FoolingResult`."""
        if self.generation == 0:
            raise RuntimeError("no generation has been evaluated yet: call run() or step() first")
        names = self.classifier.class_names
        conf = self._history_confidence()
        return FoolingResult(
            images=self.images(self.best_genomes()).detach(),
            confidence=self.best_log_probs().double().exp().cpu(),
            classes=torch.tensor(self.classes),
            evaluations=self.evaluations,
            seconds=self.seconds,
            history=History(torch.tensor(self._hist_evals, dtype=torch.long), conf),
            class_names=tuple(names[c] for c in self.classes),
            method=self.method,
            found_at=self._found_at().cpu(),
            settings=self._config(),
        )

    def _history_confidence(self) -> torch.Tensor:
        """(G, M) float64 best confidence per class after each generation (kept as log-probs until asked)."""
        if not self._hist_conf:
            return torch.zeros(0, len(self.classes), dtype=torch.float64)
        return torch.stack(self._hist_conf).double().exp().cpu()

    def _found_at(self) -> torch.Tensor:
        return torch.full((len(self.classes),), self.evaluations, dtype=torch.long)

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the search exactly: state, RNG, counters, history."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "config": self._config(),
            "generation": self.generation,
            "evaluations": self.evaluations,
            "seconds": self.seconds,
            "rng_state": self._rng.get_state().cpu(),
            "history_evaluations": torch.tensor(self._hist_evals, dtype=torch.long),
            "history_log_probs": (
                torch.stack(self._hist_conf).cpu() if self._hist_conf else torch.zeros(0, len(self.classes))
            ),
            "search": self._state(),
        }

    def load_state_dict(self, state: dict[str, Any], *, source: str = "state") -> None:
        """Restore a :meth:`state_dict`; raises :class:`CheckpointError` when it does not fit."""
        _io.check_state(state, fmt=_FORMAT, version=_VERSION, path=source)
        if state.get("config") != self._config():
            raise CheckpointError(
                f"{source!r} was written by another configuration:\n  saved:   "
                f"{state.get('config')}\n  current: {self._config()}"
            )
        if self._asked is not None:
            raise RuntimeError("cannot load a checkpoint between ask() and tell()")
        try:
            self._load_state(state["search"])
            rng = torch.Generator(device=self.device)
            rng.set_state(state["rng_state"])
            self._rng = rng
            self.generation = int(state["generation"])
            self.evaluations = int(state["evaluations"])
            self.seconds = float(state["seconds"])
            self._hist_evals = [int(e) for e in state["history_evaluations"]]
            self._hist_conf = list(state["history_log_probs"].to(self.device).unbind(0))
        except (KeyError, TypeError, RuntimeError) as err:
            raise CheckpointError(f"{source!r} is incomplete or damaged: {err}") from err

    def save_checkpoint(self, path: str | Path) -> Path:
        """Atomically write :meth:`state_dict` to ``path`` (a failed write keeps the old file)."""
        return _io.save_torch(path, self.state_dict())

    def load_checkpoint(self, path: str | Path) -> None:
        """Resume from a file written by :meth:`save_checkpoint` (loaded with ``weights_only=True``)."""
        self.load_state_dict(_io.load_torch(path), source=str(path))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(classes={len(self.classes)}, batch_size={self.batch_size}, seed={self.seed}, "
            f"encoding={self.encoding!r}, generation={self.generation}, evaluations={self.evaluations})"
        )


class MAPElites(_Evolution):
    """MAP-Elites over target classes (Nguyen, Yosinski & Clune, CVPR 2015).

    The archive keeps one elite per target class: the image the classifier is most
    confident belongs to that class. Each generation picks ``batch_size`` parents
    uniformly among the elites, mutates them, and lets every child compete for
    every class at once. Only the classifier's output scores are used (black box).
    Fitness is the log-probability, which ranks images the same way as the
    probability but does not saturate in float32 near 100%.

    Args:
        classifier: the model to fool (any :class:`~foolbench.models.Classifier`).
        encoding: how genomes become images; its ``image_shape`` must equal the classifier's input shape.
        classes: target classes (default: all).
        batch_size: children per generation.
        seed: seeds the search's own generator; the global RNG is never touched.

    Raises:
        InvalidArgumentError: unknown or repeated classes, empty class list, shape mismatch, bad batch size.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> search = fb.search.MAPElites(clf, fb.encodings.DirectEncoding((1, 28, 28)), batch_size=64, seed=0)
        >>> res = search.run(generations=3, progress=False)
        >>> res.images.shape, res.confidence.shape, res.evaluations
        (torch.Size([10, 1, 28, 28]), torch.Size([10]), 192)
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
    ) -> None:
        k = check_classifier(classifier).num_classes
        chosen = list(range(k)) if classes is None else _checks.class_list("classes", classes, num_classes=k)
        super().__init__(classifier, encoding, classes=chosen, batch_size=batch_size, seed=seed)
        self.archive = ClassArchive(torch.tensor(chosen, device=self.device), encoding)

    def _parents(self, n: int) -> Genomes:
        pool = self.archive.occupied
        if self.focus is not None:
            # spend the budget on classes that have not reached the target yet
            unmet = pool & (self.archive.fitness < self.focus)
            if bool(unmet.any()):
                pool = unmet
        occupied = torch.nonzero(pool).flatten()
        pick = torch.randint(0, occupied.numel(), (n,), generator=self._rng, device=self.device)
        assert self.archive.genomes is not None
        return self.archive.genomes[occupied[pick]]

    def _insert(self, genomes: Genomes, log_probs: torch.Tensor) -> int:
        status = self.archive.add(genomes, log_probs, evaluations=self.evaluations)
        return int((status > 0).sum())

    def best_log_probs(self) -> torch.Tensor:
        return self.archive.fitness

    def best_genomes(self) -> Genomes:
        if self.archive.genomes is None:
            raise RuntimeError("the archive is empty: run at least one generation")
        return self.archive.genomes

    def _found_at(self) -> torch.Tensor:
        return self.archive.found_at

    def _state(self) -> dict[str, Any]:
        return self.archive.state_dict()

    def _load_state(self, state: dict[str, Any]) -> None:
        self.archive.load_state_dict(state)


class SingleClassEvolution(_Evolution):
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
    ) -> None:
        check_classifier(classifier)
        chosen = _checks.class_list(
            "target", [target] if isinstance(target, int) else target, num_classes=classifier.num_classes
        )
        if len(chosen) != 1:
            raise InvalidArgumentError(f"target must be one class index, got {target!r}")
        super().__init__(classifier, encoding, classes=chosen, batch_size=batch_size, seed=seed)
        self.population = _checks.positive_int("population", population if population is not None else batch_size)
        self._pop: Genomes | None = None
        self._fit = torch.empty(0, device=self.device)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "population": self.population}

    def ask(self, n: int | None = None) -> Genomes:
        # generation 0 samples the whole initial population when no size is forced
        if self.generation == 0 and n is None:
            n = max(self.population, self.batch_size)
        return super().ask(n)

    def _parents(self, n: int) -> Genomes:
        assert self._pop is not None
        size = self._fit.shape[0]
        a = torch.randint(0, size, (n,), generator=self._rng, device=self.device)
        b = torch.randint(0, size, (n,), generator=self._rng, device=self.device)
        winner = torch.where(self._fit[a] >= self._fit[b], a, b)
        return self._pop[winner]

    def _insert(self, genomes: Genomes, log_probs: torch.Tensor) -> int:
        scores = log_probs[:, self.classes[0]].to(self.device).float()
        old_best = self._fit.max() if self._fit.numel() else torch.tensor(-torch.inf, device=self.device)
        if self._pop is None:
            keep = torch.argsort(scores, descending=True, stable=True)[: self.population]
            self._pop, self._fit = genomes[keep], scores[keep]
        else:
            size = self._fit.shape[0]
            both = torch.cat([self._fit, scores])
            top = torch.topk(both, size, sorted=False).indices
            survivors = torch.zeros(both.shape[0], dtype=torch.bool, device=self.device)
            survivors[top] = True
            losers = torch.nonzero(~survivors[:size]).flatten()
            winners = torch.nonzero(survivors[size:]).flatten()
            if losers.numel():
                self._pop[losers] = genomes[winners]
                self._fit[losers] = scores[winners]
        return int(bool(self._fit.max() > old_best))

    def best_log_probs(self) -> torch.Tensor:
        return self._fit.max().reshape(1)

    def best_genomes(self) -> Genomes:
        if self._pop is None:
            raise RuntimeError("the population is empty: run at least one generation")
        return self._pop[self._fit.argmax().reshape(1)]

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"fitness": self._fit.cpu()}
        if self._pop is not None:
            state["genomes"] = {k: v.cpu() for k, v in self.encoding.genomes_to_state(self._pop).items()}
        return state

    def _load_state(self, state: dict[str, Any]) -> None:
        self._fit = state["fitness"].to(self.device)
        genomes = state.get("genomes")
        self._pop = (
            None
            if genomes is None
            else self.encoding.genomes_from_state({k: v.to(self.device) for k, v in genomes.items()})
        )
