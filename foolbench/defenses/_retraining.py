"""Retraining procedures: an extra "fooling" class, and fine-tuning on universal perturbations.

Both run round after round and checkpoint every finished round. A checkpoint is keyed by
everything that determines it (the configuration, the data, the starting model's
:func:`~foolbench.models.weights_digest`): one written under another key is refused with
:class:`~foolbench.errors.CheckpointError`. It keeps each round's model, so a run asking
for fewer rounds than a checkpoint holds reads its rows from it, and a longer one resumes.
"""

from __future__ import annotations

import copy
import functools
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foolbench import _checkpoint, _checks, _io
from foolbench.encodings import DirectEncoding, Encoding
from foolbench.errors import CheckpointError, InvalidArgumentError, InvalidTypeError
from foolbench.models import Classifier, TorchClassifier, check_classifier, train_classifier, weights_digest
from foolbench.models._classifier import architecture_digest, tensors_digest
from foolbench.search import PGD, MAPElites, MapExecutor, SerialMap, UniversalPerturbation, fooling_rate

__all__ = ["AdversarialFineTuning", "FoolingClassRetraining", "RoundTable", "accuracy"]

ModelFactory = Callable[[int], nn.Module]


def accuracy(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``images`` classified as ``labels`` (a prediction of an extra class counts as wrong).

    Examples:
        >>> import foolbench as fb
        >>> x, y = fb.models.mnist_digits("test", limit=100)
        >>> accuracy(fb.models.lenet_mnist(), x, y) > 0.9
        True
    """
    clf = check_classifier(classifier)
    x = _checks.images("images", images, shape=clf.input_shape, bounds=clf.bounds)
    y = _checks.labels("labels", labels, batch=x.shape[0], num_classes=clf.num_classes)
    return float((clf.predict(x).cpu() == y.cpu()).float().mean())


@dataclass
class RoundTable:
    """Per-round figures of a retraining defense.

    Attributes:
        title: what was measured.
        rows: one dict per round (round 0 is the undefended model).

    Examples:
        >>> t = RoundTable("demo", [{"round": 0, "accuracy": 0.5}])
        >>> print(t.to_markdown().splitlines()[2])
        | round | accuracy |
    """

    title: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_markdown(self) -> str:
        """The rows as a Markdown table."""
        if not self.rows:
            return f"### {self.title}\n\n(no rounds)\n"
        cols = list(self.rows[0])
        lines = [f"### {self.title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in self.rows:
            cells = ["-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _data(name: str, images: torch.Tensor, labels: torch.Tensor, clf: TorchClassifier) -> tuple[torch.Tensor, ...]:
    """The images on the CPU, in float32 or the classifier's dtype (others, e.g. float64 for a float32 model, are
    converted to float32; float32 images keep their bytes, so the checkpoints' data digest), and the labels."""
    x = _checks.images(f"{name}_images", images, shape=clf.input_shape, bounds=clf.bounds)  # refuses empty batches
    y = _checks.labels(f"{name}_labels", labels, batch=x.shape[0], num_classes=clf.num_classes)
    dtype = x.dtype if x.dtype in (torch.float32, clf.dtype) else torch.float32
    return x.detach().to("cpu", dtype), y.cpu()


def _seed(seed: Any, largest_offset: int) -> int:
    """``seed`` checked as a seed whose derived seeds, up to ``seed + largest_offset``, are seeds too."""
    value = _checks.seed_int("seed", seed)
    if value + largest_offset >= _checks.SEED_LIMIT:
        raise InvalidArgumentError(
            f"seed must be an int in [0, {_checks.SEED_LIMIT - 1 - largest_offset}] (2**64 - 1 - {largest_offset}: "
            f"the rounds are seeded with up to seed + {largest_offset}), got {value}"
        )
    return value


def _pgd_text(pgd: PGD | None, num: Callable[[Any], str]) -> str:
    """The PGD attack's settings as text, its ``eps`` written by ``num`` (None: ``"None"``).

    With ``f"{x:g}"`` it is the text of ``repr(pgd)`` that checkpoints were keyed on before the exact text.
    """
    if pgd is None:
        return "None"
    return (
        f"PGD(eps={num(pgd.eps)}, steps={pgd.steps}, step_size={pgd.step_size}, norm={pgd.norm!r}, "
        f"random_start={pgd.random_start})"
    )


def _classifier(value: Any) -> TorchClassifier:
    if not isinstance(value, TorchClassifier):
        raise InvalidTypeError(
            "classifier must be a foolbench.models.TorchClassifier (retraining needs its module), "
            f"got {type(value).__name__}"
        )
    return value


def _weights(clf: TorchClassifier) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in clf.module.state_dict().items()}


@contextmanager
def _bar(title: str, total: int, done: int, progress: bool) -> Iterator[Any]:
    from tqdm.auto import tqdm

    with tqdm(total=total, initial=done, desc=title, unit="round", disable=not progress, leave=False) as bar:
        yield bar


def _show(bar: Any, row: dict[str, Any]) -> None:
    bar.set_postfix({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items() if v is not None})
    bar.update(1)


class _Rounds:
    """Checkpointed rounds: the state after each finished round is saved atomically.

    The checkpoint's key is :meth:`_config` plus the starting model's weights digest and
    a digest of the data; any difference is refused with :class:`CheckpointError`.
    """

    fmt = "foolbench.defense"
    version = 3
    original: TorchClassifier
    rounds: int
    _data: dict[str, torch.Tensor]

    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    def _key(self) -> dict[str, Any]:
        scoring = _checkpoint.digest(self.original.identity())[:16]  # its preprocessing (same weights, other mean)
        return {
            **self._config(),
            "model": weights_digest(self.original),
            "scoring": scoring,
            "original_architecture": architecture_digest(self.original),  # what its weights do not show
            "data": tensors_digest(self._data),
        }

    def _save(self, path: Path | None, key: dict[str, Any], state: dict[str, Any]) -> None:
        if path is not None:
            _checkpoint.save(path, _checkpoint.wrap(fmt=self.fmt, version=self.version, config=key, payload=state))

    def _load(self, path: Path | None, key: dict[str, Any], needs: dict[str, type]) -> dict[str, Any] | None:
        """The checkpoint's state, cut to ``self.rounds + 1`` rounds; None when there is none.

        ``needs`` maps the procedure's own fields to their types; a missing or mistyped one
        is a :class:`CheckpointError` naming it.
        """
        if path is None or not path.exists():
            return None
        # format, version, configuration (model and data digests included) and checksum, shared with the searches
        state = _checkpoint.check(
            _checkpoint.load(path),
            fmt=self.fmt,
            version=self.version,
            config=key,
            source=str(path),
            added=("scoring", "uap_exact", "original_architecture", "pgd_exact"),
        )
        rows, models = state.get("rows"), state.get("models")
        if not isinstance(rows, list) or not isinstance(models, list) or not 0 < len(rows) == len(models):
            raise CheckpointError(f"{str(path)!r} holds no finished rounds (rows/models missing or mismatched)")
        for name, kind in needs.items():
            value = state.get(name)
            if not isinstance(value, kind) or (isinstance(value, list) and len(value) < len(rows)):
                raise CheckpointError(
                    f"{str(path)!r} has a missing or corrupt field {name!r} (expected {kind.__name__})"
                )
        keep = min(len(rows), self.rounds + 1)
        return {**state, "rows": rows[:keep], "models": models[:keep]}


def _one_search(
    clf: TorchClassifier,
    encoding: Encoding,
    num_classes: int,
    batch_size: int,
    max_evaluations: int,
    target: float,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One fresh MAP-Elites search of a retraining round (top level, so executors can ship it)."""
    search = MAPElites(clf, encoding, classes=list(range(num_classes)), batch_size=batch_size, seed=seed)
    res = search.run(max_evaluations=max_evaluations, target_confidence=target, progress=False)
    return res.images.cpu(), res.confidence, res.evaluations


class FoolingClassRetraining(_Rounds):
    """The retraining defense of Nguyen, Yosinski & Clune (2015): fooling images become class K.

    Round 0 evolves fooling images against the given model (``searches_per_round``
    MAP-Elites runs with different seeds, one elite per real class each). Each later
    round trains a model with K + 1 outputs on the real training data plus the fooling
    images found so far, labelled K, as many as a real class has: every one of them
    (repeated) while they are fewer, a seeded draw from all of them once they are more,
    then measures it and evolves fresh fooling images against it: searches target the
    K real classes only, so an image the model puts in class K counts as rejected.

    Per round it records: clean accuracy on the held-out data, the share of round-0
    fooling images now put in class K, and what a fresh search reaches (median best
    confidence, share of (class, search) pairs at ``target_confidence``, evaluations).

    Args:
        classifier: the undefended model (its preprocessing, bounds and device are reused).
        model_fn: ``model_fn(num_classes)`` returns a fresh ``nn.Module`` of the same architecture.
        train_images, train_labels: real training data.
        test_images, test_labels: held-out real data.
        rounds: retraining rounds R >= 1 (R + 1 models are measured).
        encoding: genome encoding of the searches (default: direct, MNIST-tuned recipe).
        searches_per_round: MAP-Elites runs per round.
        executor: runs a round's searches (default in this process, one after another); e.g.
            ``foolbench.distributed.RayMap()`` spreads them over a Ray cluster, or a
            :class:`concurrent.futures.ThreadPoolExecutor` over threads, with the same results.
        max_evaluations: budget of each run.
        search_batch_size: children per generation.
        target_confidence: the level counted as fooled (and each run's early stop).
        fine_tune: start each model from the previous one's weights (layers whose shape
            changed start fresh) instead of from scratch.
        epochs, batch_size, lr: the training loop (Adam, one-cycle schedule, seeded).
        seed: seeds training and searches (round r's searches with ``seed + 1000 r + s``, so at most
            ``2**64 - 1000 R - searches_per_round``).

    Images in another dtype than float32 or the classifier's (float64 for a float32 model) are kept
    in float32; each model trains on them in its own dtype.

    Raises:
        InvalidArgumentError: zero rounds or searches, empty data, labels outside the classes, a seed
            whose derived seeds pass ``2**64 - 1``.
        InvalidTypeError: ``classifier`` is not a TorchClassifier or ``model_fn`` is not callable.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> xtr, ytr = fb.models.mnist_digits("train", limit=200)
        >>> xte, yte = fb.models.mnist_digits("test", limit=100)
        >>> defense = fb.defenses.FoolingClassRetraining(
        ...     clf, fb.models.LeNet, xtr, ytr, xte, yte, rounds=1, searches_per_round=1,
        ...     max_evaluations=640, epochs=1)
        >>> table = defense.run(progress=False)
        >>> [row["round"] for row in table.rows], defense.classifier.num_classes
        ([0, 1], 11)
    """

    def __init__(
        self,
        classifier: TorchClassifier,
        model_fn: ModelFactory,
        train_images: torch.Tensor,
        train_labels: torch.Tensor,
        test_images: torch.Tensor,
        test_labels: torch.Tensor,
        *,
        rounds: int = 3,
        encoding: Encoding | None = None,
        searches_per_round: int = 5,
        max_evaluations: int = 30_000,
        search_batch_size: int = 64,
        target_confidence: float = 0.9999,
        fine_tune: bool = False,
        epochs: int = 8,
        batch_size: int = 64,
        lr: float = 2e-3,
        seed: int = 0,
        executor: MapExecutor | None = None,
    ) -> None:
        self.original = _classifier(classifier)
        self.executor: MapExecutor = SerialMap() if executor is None else executor
        if not callable(getattr(self.executor, "map", None)):
            raise InvalidTypeError(f"executor must have a map(fn, items) method, got {type(executor).__name__}")
        if not callable(model_fn):
            raise InvalidTypeError(f"model_fn must be callable as model_fn(num_classes), got {type(model_fn).__name__}")
        self.model_fn = model_fn
        self.train_x, self.train_y = _data("train", train_images, train_labels, self.original)
        self.test_x, self.test_y = _data("test", test_images, test_labels, self.original)
        self.rounds = _checks.positive_int("rounds", rounds)
        self.encoding: Encoding = encoding or DirectEncoding(self.original.input_shape, mutation_rate=0.02, eta=1.0)
        self.searches_per_round = _checks.positive_int("searches_per_round", searches_per_round)
        self.max_evaluations = _checks.positive_int("max_evaluations", max_evaluations)
        self.search_batch_size = _checks.positive_int("search_batch_size", search_batch_size)
        self.target_confidence = _checks.real("target_confidence", target_confidence, low=0.0, high=1.0, low_open=True)
        self.fine_tune = _checks.boolean("fine_tune", fine_tune)
        self.epochs = _checks.positive_int("epochs", epochs)
        self.batch_size = _checks.positive_int("batch_size", batch_size)
        self.lr = _checks.real("lr", lr, low=0.0, low_open=True)
        # the searches of the last round are seeded with seed + 1000 * rounds + searches_per_round - 1
        self.seed = _seed(seed, 1000 * self.rounds + self.searches_per_round - 1)
        self.num_classes = self.original.num_classes
        self.class_names = [*self.original.class_names, "fooling"]  # of the retrained models
        self.classifier: TorchClassifier = self.original
        self.table = RoundTable("Fooling-class retraining (Nguyen et al. 2015)")
        self._data = {"train_x": self.train_x, "train_y": self.train_y, "test_x": self.test_x, "test_y": self.test_y}

    def _config(self) -> dict[str, Any]:
        return {
            "defense": "fooling_class_retraining",
            "encoding": self.encoding.config(),
            "searches_per_round": self.searches_per_round,
            "max_evaluations": self.max_evaluations,
            "search_batch_size": self.search_batch_size,
            "target_confidence": self.target_confidence,
            "fine_tune": self.fine_tune,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
            "architecture": weights_digest(self._fresh(1)),  # model_fn's initial weights for round 1
        }

    def _fresh(self, round_: int) -> nn.Module:
        """``model_fn(K + 1)`` initialised under ``seed + round_``; the global RNGs are left as found."""
        k = self.num_classes
        with _checks.seeded_init(self.seed + round_):
            module = self.model_fn(k + 1)
        if not isinstance(module, nn.Module):
            raise InvalidTypeError(f"model_fn({k + 1}) must return an nn.Module, got {type(module).__name__}")
        return module

    def _wrap(self, module: nn.Module) -> TorchClassifier:
        """A classifier around a (K + 1)-class ``module`` with the original's preprocessing, bounds and device."""
        return self.original.replace(
            module=module.eval(), num_classes=self.num_classes + 1, class_names=self.class_names
        )

    def _search(self, clf: TorchClassifier, round_: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        one = functools.partial(
            _one_search,
            clf,
            self.encoding,
            self.num_classes,
            self.search_batch_size,
            self.max_evaluations,
            self.target_confidence,
        )
        seeds = [self.seed + 1000 * round_ + s for s in range(self.searches_per_round)]
        runs = list(self.executor.map(one, seeds))  # independent, seeded searches: anywhere, same results
        return torch.cat([r[0] for r in runs]), torch.cat([r[1] for r in runs]), sum(r[2] for r in runs)

    def _train(self, fooling: torch.Tensor, previous: TorchClassifier, round_: int) -> TorchClassifier:
        k = self.num_classes
        module = self._fresh(round_)
        if self.fine_tune:
            own = module.state_dict()
            old = previous.module.state_dict()
            own.update({n: t for n, t in old.items() if n in own and own[n].shape == t.shape})
            module.load_state_dict(own)
        clf = self._wrap(module)  # its dummy forward checks the factory's output shape before training
        per_class = max(1, self.train_x.shape[0] // k)
        if fooling.shape[0] <= per_class:  # every one, repeated to the size of a real class
            extra = fooling.repeat(-(-per_class // fooling.shape[0]), 1, 1, 1)[:per_class]
        else:  # a draw from the whole pool: the first rows alone were the oldest rounds' images
            draw = torch.Generator().manual_seed(self.seed + round_)
            extra = fooling[torch.randperm(fooling.shape[0], generator=draw)[:per_class].to(fooling.device)]
        x = torch.cat([self.train_x, extra]).to(clf.device, clf.dtype)  # the fresh module's dtype
        y = torch.cat([self.train_y, torch.full((extra.shape[0],), k, dtype=torch.long)]).to(clf.device)
        train_classifier(
            module, x, y, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
            preprocess=clf.preprocess, seed=self.seed + round_,
        )  # fmt: skip
        module.eval()
        return clf

    def run(self, *, checkpoint: str | Path | None = None, progress: bool = True) -> RoundTable:
        """Run (or resume) every round; returns the per-round table and sets :attr:`classifier`.

        Args:
            checkpoint: file holding the finished rounds; an interrupted run resumes
                after the last finished round, a run with fewer rounds reads them from it.
            progress: show a tqdm bar over the rounds (with the last round's figures).

        Raises:
            CheckpointError: the checkpoint was written for another configuration, data or
                starting model, or is corrupt.
        """
        path = None if checkpoint is None else Path(checkpoint)
        key = self._key()
        state = self._load(path, key, {"pool_sizes": list, "fooling": torch.Tensor, "round0": torch.Tensor})
        clf, round0 = self.original, torch.empty(0, *self.original.input_shape)
        rows: list[dict[str, Any]] = []
        models: list[dict[str, torch.Tensor] | None] = []
        sizes: list[int] = []  # fooling images in the pool after each round
        pool = round0
        if state is not None:  # resume after the last finished round, with the model it measured
            rows, models, sizes = state["rows"], state["models"], list(state["pool_sizes"][: len(state["rows"])])
            pool, round0 = state["fooling"][: sizes[-1]], state["round0"]
            if models[-1] is not None:
                module = self._fresh(len(rows) - 1)
                module.load_state_dict(models[-1])
                clf = self._wrap(module)
        self.table.rows = rows
        with _bar("fooling-class retraining", self.rounds + 1, len(rows), progress) as bar:
            for r in range(len(rows), self.rounds + 1):
                clf, images = self._round(clf, pool, round0, r)
                if r == 0:
                    round0 = images
                pool = torch.cat([pool, images])
                models.append(None if r == 0 else _weights(clf))
                sizes.append(pool.shape[0])
                state = {"rows": rows, "models": models, "pool_sizes": sizes, "fooling": pool, "round0": round0}
                self._save(path, key, state)
                _show(bar, rows[-1])
        self.classifier = clf
        return self.table

    def _round(
        self, clf: TorchClassifier, pool: torch.Tensor, round0: torch.Tensor, r: int
    ) -> tuple[TorchClassifier, torch.Tensor]:
        """Train round ``r``'s model (r > 0), search it and append its row; returns the model and fresh images."""
        t0 = time.perf_counter()
        if r > 0:
            clf = self._train(pool, clf, r)
        images, conf, evals = self._search(clf, r)
        caught = clf.predict(round0 if r > 0 else images).cpu() == self.num_classes
        self.table.rows.append(
            {
                "round": r,
                "classes": clf.num_classes,
                "clean_accuracy": accuracy(clf, self.test_x, self.test_y),
                "round0_caught": float(caught.float().mean()),
                "fresh_median_confidence": float(statistics.median(conf.tolist())),
                "fresh_fooled": float((conf >= self.target_confidence).float().mean()),
                "search_evaluations": evals,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        return clf, images


class AdversarialFineTuning(_Rounds):
    """The universal-perturbation defense of Moosavi-Dezfooli et al. (2017): fine-tune on perturbed inputs.

    Round r fits a universal perturbation against the current model on the fitting
    images and measures its fooling rate on the held-out images; then (if rounds
    remain) fine-tunes a copy of the model on the training data where half the
    images carry that perturbation (and optionally PGD examples), and the next
    round recomputes a fresh perturbation against the fine-tuned model.

    Per round it records: clean accuracy on the held-out data, the fooling rate of
    the fresh perturbation, and that of the previous round's perturbation on the
    current model (what fine-tuning fixed).

    Args:
        classifier: the undefended model (it is copied, never modified).
        train_images, train_labels: data to fine-tune on.
        test_images, test_labels: held-out data.
        uap: how perturbations are computed (its ``eps`` and norm define the threat).
        fit_images: number of training images the perturbation is fitted on.
        rounds: fine-tuning rounds R >= 1.
        pgd: when given, each fine-tuning batch also holds PGD examples from this attack.
        epochs, batch_size, lr: the fine-tuning loop (Adam, one-cycle schedule, seeded).
        seed: seeds the fine-tuning and the choice of fitting images (round r with ``seed + r``, so at
            most ``2**64 - 1 - R``).

    Images in another dtype than float32 or the classifier's are kept in float32, and fine-tuning
    feeds them to the model in its dtype.

    Raises:
        InvalidArgumentError: zero rounds, empty data, too few fitting images, a seed whose derived
            seeds pass ``2**64 - 1``.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> xtr, ytr = fb.models.mnist_digits("train", limit=200)
        >>> xte, yte = fb.models.mnist_digits("test", limit=100)
        >>> uap = fb.search.UniversalPerturbation(eps=0.2, method="sgd", max_passes=2)
        >>> table = fb.defenses.AdversarialFineTuning(
        ...     clf, xtr, ytr, xte, yte, uap=uap, fit_images=100, rounds=1, epochs=1).run(progress=False)
        >>> len(table.rows)
        2
    """

    def __init__(
        self,
        classifier: TorchClassifier,
        train_images: torch.Tensor,
        train_labels: torch.Tensor,
        test_images: torch.Tensor,
        test_labels: torch.Tensor,
        *,
        uap: UniversalPerturbation,
        fit_images: int = 500,
        rounds: int = 3,
        pgd: PGD | None = None,
        epochs: int = 2,
        batch_size: int = 64,
        lr: float = 5e-4,
        seed: int = 0,
    ) -> None:
        self.original = _classifier(classifier)
        self.train_x, self.train_y = _data("train", train_images, train_labels, self.original)
        self.test_x, self.test_y = _data("test", test_images, test_labels, self.original)
        if not isinstance(uap, UniversalPerturbation):
            raise InvalidTypeError(f"uap must be a foolbench.search.UniversalPerturbation, got {type(uap).__name__}")
        if pgd is not None and not isinstance(pgd, PGD):
            raise InvalidTypeError(f"pgd must be a foolbench.search.PGD or None, got {type(pgd).__name__}")
        self.uap, self.pgd = uap, pgd
        self.fit_images = _checks.positive_int("fit_images", fit_images)
        if self.fit_images > self.train_x.shape[0]:
            raise InvalidArgumentError(
                f"fit_images must be at most the {self.train_x.shape[0]} training images, got {fit_images}"
            )
        self.rounds = _checks.positive_int("rounds", rounds)
        self.epochs = _checks.positive_int("epochs", epochs)
        self.batch_size = _checks.positive_int("batch_size", batch_size)
        self.lr = _checks.real("lr", lr, low=0.0, low_open=True)
        self.seed = _seed(seed, self.rounds)  # round r fine-tunes (and attacks) with seed + r
        self.classifier: TorchClassifier = self.original
        self.perturbations: list[torch.Tensor] = []
        self.table = RoundTable("Fine-tuning on universal perturbations (Moosavi-Dezfooli et al. 2017)")
        self._data = {"train_x": self.train_x, "train_y": self.train_y, "test_x": self.test_x, "test_y": self.test_y}

    def _config(self) -> dict[str, Any]:
        return {
            "defense": "adversarial_fine_tuning",
            # six digits, as checkpoints before the exact text had it; the exact text tells 8/255 from 0.0313725
            "uap": self.uap._text(lambda x: f"{x:g}"),
            "uap_exact": repr(self.uap),
            # six digits, as checkpoints before the exact text had it; the exact text tells 8/255 from 0.0313725
            "pgd": _pgd_text(self.pgd, lambda x: f"{x:g}"),
            "pgd_exact": _pgd_text(self.pgd, _io.exact_number),
            "fit_images": self.fit_images,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
        }

    def _fine_tune(self, clf: TorchClassifier, v: torch.Tensor, round_: int) -> TorchClassifier:
        module = copy.deepcopy(clf.module).eval()
        new = clf.replace(module=module)
        lo, hi = clf.bounds
        gen = torch.Generator().manual_seed(self.seed + round_)
        half = torch.rand(self.train_x.shape[0], generator=gen) < 0.5
        x = torch.where(half[:, None, None, None], (self.train_x + v.cpu()).clamp(lo, hi), self.train_x)
        y = self.train_y
        if self.pgd is not None:
            attack = self.pgd(clf, self.train_x.to(clf.device), self.train_y.to(clf.device), seed=self.seed + round_)
            adv = attack.adversarial.detach().cpu()
            x, y = torch.cat([x, adv]), torch.cat([y, y])
        train_classifier(
            module, x.to(new.device, new.dtype), y.to(new.device), epochs=self.epochs, batch_size=self.batch_size,
            lr=self.lr, max_shift=0, preprocess=new.preprocess, seed=self.seed + round_,
        )  # fmt: skip
        module.eval()
        return new

    def run(self, *, checkpoint: str | Path | None = None, progress: bool = True) -> RoundTable:
        """Run (or resume) every round; returns the per-round table and sets :attr:`classifier`.

        Args:
            checkpoint: file holding the finished rounds; an interrupted run resumes after the
                last one, a run with fewer rounds reads them from it.
            progress: show a tqdm bar over the rounds (with the last round's figures).

        Raises:
            CheckpointError: the checkpoint was written for another configuration, data or
                starting model, or is corrupt.
        """
        path = None if checkpoint is None else Path(checkpoint)
        key = self._key()
        state = self._load(path, key, {"perturbations": list})
        clf = self.original
        rows: list[dict[str, Any]] = []
        models: list[dict[str, torch.Tensor] | None] = []
        self.perturbations = []
        if state is not None:  # resume after the last finished round, with the model it measured
            rows, models = state["rows"], state["models"]
            self.perturbations = list(state["perturbations"][: len(rows)])
            if models[-1] is not None:
                module = copy.deepcopy(self.original.module).eval()
                module.load_state_dict(models[-1])
                clf = self.original.replace(module=module)
        self.table.rows = rows
        gen = torch.Generator().manual_seed(self.seed)
        fit_idx = torch.randperm(self.train_x.shape[0], generator=gen)[: self.fit_images]
        with _bar("adversarial fine-tuning", self.rounds + 1, len(rows), progress) as bar:
            for r in range(len(rows), self.rounds + 1):
                t0 = time.perf_counter()
                if r > 0:
                    clf = self._fine_tune(clf, self.perturbations[-1], r)
                v = self.uap.fit(clf, self.train_x[fit_idx].to(clf.device)).perturbation.detach().cpu()
                previous = fooling_rate(clf, self.test_x, self.perturbations[-1]) if self.perturbations else None
                rows.append(
                    {
                        "round": r,
                        "clean_accuracy": accuracy(clf, self.test_x, self.test_y),
                        "fooling_rate": fooling_rate(clf, self.test_x, v),
                        "previous_uap_fooling_rate": previous,
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                )
                self.perturbations.append(v)
                models.append(None if r == 0 else _weights(clf))
                self._save(path, key, {"rows": rows, "perturbations": self.perturbations, "models": models})
                _show(bar, rows[-1])
        self.classifier = clf
        return self.table
