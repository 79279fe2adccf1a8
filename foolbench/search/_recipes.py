"""Ready-made runs from plain arguments: the library side of the ``foolbench`` commands.

Each function builds a zoo model and a search from plain values, runs it, writes its
files under ``out`` (``summary.json`` in one shape for every run, see :func:`foolbench._io.summary`)
and returns that summary. The output folder is locked while a run writes to it.
"""

from __future__ import annotations

import numbers
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from foolbench import _checks, _io
from foolbench.encodings import CPPNEncoding, DirectEncoding, Encoding
from foolbench.errors import CheckpointError, InvalidArgumentError, InvalidTypeError
from foolbench.models import auto_precision, load_model, mnist_digits
from foolbench.search._ascent import GradientAscent
from foolbench.search._callbacks import Callback
from foolbench.search._evolution import MAPElites, RandomSearch
from foolbench.search._operators import UnmetFirst
from foolbench.search._polish import GradientPolish
from foolbench.search._uap import UniversalPerturbation, fooling_rate

__all__ = ["MNIST_RECIPE", "EvolutionRecipe", "run_ascent", "run_evolution", "run_uap"]


@dataclass(frozen=True)
class EvolutionRecipe:
    """Settings of a direct-encoding evolution that work well together.

    Attributes:
        batch_size: genomes per generation.
        mutation_rate: mutations drawn per pixel, at positions drawn with replacement: about
            ``1 - exp(-mutation_rate)`` of the pixels change.
        eta: polynomial-mutation index (small: large pixel moves).

    Examples:
        >>> import foolbench as fb
        >>> fb.search.MNIST_RECIPE
        EvolutionRecipe(batch_size=64, mutation_rate=0.02, eta=1.0)
        >>> fb.search.MNIST_RECIPE.encoding((1, 28, 28)).image_shape
        (1, 28, 28)
    """

    batch_size: int
    mutation_rate: float
    eta: float

    def encoding(self, image_shape: tuple[int, int, int]) -> DirectEncoding:
        """A :class:`~foolbench.encodings.DirectEncoding` with this recipe's mutation settings."""
        return DirectEncoding(image_shape, mutation_rate=self.mutation_rate, eta=self.eta)


MNIST_RECIPE = EvolutionRecipe(batch_size=64, mutation_rate=0.02, eta=1.0)
"""The tuned direct-encoding recipe for MNIST (see ``benchmarks/bench_evolution.py``): small
generations, sparse but large pixel moves. ``foolbench demo`` and ``evolve`` use it by default."""


def _json_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as the summary writes them, checked before the run (a ``torch.device`` or a tensor of
    classes is accepted by the checks and failed only when the finished run wrote its summary)."""
    if settings.get("device") is not None:
        settings["device"] = str(settings["device"])
    classes = settings.get("classes")
    if classes is not None:
        if isinstance(classes, (str, int)) or not hasattr(classes, "__iter__") or getattr(classes, "ndim", 1) == 0:
            raise InvalidTypeError(
                f"classes must be a list of class indices or names, got {type(classes).__name__} {classes!r}"
            )
        items = classes.tolist() if hasattr(classes, "tolist") else list(classes)
        # numpy and torch integers as ints (a bool stays a bool: the class checks refuse it)
        settings["classes"] = [
            c if isinstance(c, bool) or not isinstance(c, numbers.Integral) else int(c) for c in items
        ]
    return settings


def _model(model: str, device: Any, image_size: int | None, precision: str = "fp32", compile: bool = False) -> Any:
    kwargs: dict[str, Any] = {"device": _checks.torch_device("device", device)}
    if image_size is not None:
        if model != "efficientnet-lite0":
            raise InvalidArgumentError(f"image_size applies to ImageNet models only, got it for {model!r}")
        kwargs["image_size"] = image_size
    if model == "efficientnet-lite0":  # its factory picks the chunk size for the precision
        kwargs["precision"] = precision
    clf = load_model(model, **kwargs)
    if clf.precision != precision or clf.compile_module != compile:
        clf = clf.replace(precision=precision, compile=compile)
    return clf


def _classes(classes: Sequence[int | str] | None, classifier: Any) -> list[int] | None:
    if classes is None:
        return None
    names = getattr(classifier, "class_names", None) or [str(i) for i in range(classifier.num_classes)]
    return _checks.class_indices("classes", classes, class_names=names)


def _encoding(
    name: str,
    shape: tuple[int, int, int],
    *,
    mutation_rate: float | None,
    eta: float | None,
    max_nodes: int | None,
    max_connections: int | None,
) -> Encoding:
    """The encoding ``name`` with the settings given (None: its default; checked by ``_encoding_settings``)."""
    if name == "cppn":
        given: dict[str, Any] = {"max_nodes": max_nodes, "max_connections": max_connections, "eta": eta}
        return CPPNEncoding(shape, **{k: v for k, v in given.items() if v is not None})  # None: the encoding's default
    rate = MNIST_RECIPE.mutation_rate if mutation_rate is None else mutation_rate
    return DirectEncoding(shape, mutation_rate=rate, eta=MNIST_RECIPE.eta if eta is None else eta)


def _encoding_settings(
    name: str, *, mutation_rate: float | None, max_nodes: int | None, max_connections: int | None
) -> None:
    """Refuse settings of the other encoding: a setting that would change nothing is a mistake to name."""
    _checks.choice("encoding", name, ("direct", "cppn"))
    if name == "cppn" and mutation_rate is not None:
        raise InvalidArgumentError(
            f"mutation_rate applies to the direct encoding only (a CPPN mutates through its operator rates: "
            f"use strength), got {mutation_rate!r} with encoding='cppn'"
        )
    for key, value in (("max_nodes", max_nodes), ("max_connections", max_connections)):
        if name == "direct" and value is not None:
            raise InvalidArgumentError(
                f"{key} applies to the cppn encoding only (a direct genome is its pixels), got {value!r} "
                "with encoding='direct'"
            )


def _fresh(out: Path, names: Sequence[str]) -> None:
    for name in names:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


Computed = tuple[dict[str, Any], dict[str, Any]]
"""What a run's body returns: its results and the settings it adds (such as the search's own)."""

Prepare = Callable[[Path], Callable[[], Computed]]
"""A run's preparation: given the folder, it checks every argument and builds what the run needs (model,
classes, search) without changing the folder, and returns the run's body."""


def _locked_run(
    out: str | Path,
    command: str,
    settings: dict[str, Any],
    prepare: Prepare,
    *,
    reuse: Sequence[str] = (),
    forget_late: bool = False,
) -> dict[str, Any]:
    """Check ``out``, lock it, prepare the run, then run it and write the summary.

    ``prepare(folder)`` checks the arguments and builds the model and search before anything in the
    folder is changed, so a bad argument leaves an earlier run's files as they were; the body it
    returns runs only after the earlier summary is removed. With ``reuse`` (the output files), a folder
    that already holds them from the same command, settings and foolbench version is kept and its
    summary returned with ``"reused": True`` (nothing is prepared). With ``forget_late`` the body removes
    the earlier summary itself, once it knows it will run (a search, after its checkpoint is accepted).
    """
    _checks.seed_int("seed", settings["seed"])
    folder = _io.out_folder(out)
    with _io.locked_folder(folder):
        saved = _up_to_date(folder, command, settings, reuse) if reuse else None
        if saved is not None:
            return {**saved, "reused": True}
        body = prepare(folder)
        # a run that fails part-way must not leave its outputs beside an older run's summary
        if not forget_late:
            _forget_summary(folder)
        results, more = body()
        summary = _io.summary(command, {**settings, **more}, results)
        _io.write_json(folder / "summary.json", summary)
    return summary


def _forget_summary(folder: Path) -> None:
    """Remove ``folder``'s summary (a folder in its way is reported when the summary is written)."""
    old = folder / "summary.json"
    if old.is_file() or old.is_symlink():
        old.unlink()


class _ForgetSummary(Callback):
    """Removes the folder's earlier summary when the search starts: after its checkpoint was accepted."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_start(self, search: Any) -> None:
        _forget_summary(self.folder)


def _search_summary(result: Any) -> Computed:
    results = result.summary()
    return results, {"search": results.pop("settings")}


def run_evolution(
    out: str | Path,
    *,
    model: str = "lenet-mnist",
    encoding: str = "direct",
    classes: Sequence[int | str] | None = None,
    max_evaluations: int | None = 30_000,
    generations: int | None = None,
    target_confidence: float = 0.9999,
    parents_confidence: float | None = None,
    batch_size: int = MNIST_RECIPE.batch_size,
    mutation_rate: float | None = None,
    eta: float | None = None,
    max_nodes: int | None = None,
    max_connections: int | None = None,
    method: str = "map-elites",
    strength: float = 1.0,
    precision: str = "fp32",
    verify: bool = False,
    compile: bool = False,
    polish: bool = False,
    islands: int = 1,
    seed: int = 0,
    image_size: int | None = None,
    device: str | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 25,
    fresh: bool = False,
    progress: bool = True,
    title: str | None = None,
    command: str = "evolve",
) -> dict[str, Any]:
    """Evolve fooling images with MAP-Elites for a zoo model and write them under ``out``.

    Resumes from ``checkpoint`` (default ``out/checkpoint.pt``) when it exists; a checkpoint of
    other settings is refused. Writes ``images.png``, ``images.pt``, ``report.md`` and ``summary.json``.

    Args:
        out: output folder (created; locked while the run writes to it).
        model: zoo model name (see :func:`foolbench.models.zoo`).
        encoding: ``"direct"`` (pixels) or ``"cppn"``.
        classes: target classes as indices or class names (default: all).
        max_evaluations: evaluation budget (None: no limit).
        generations: generation budget (None: no limit).
        target_confidence: stop once every class reaches it; map-elites draws its parents from the
            classes still below it while there are any (:class:`~foolbench.search.UnmetFirst`).
        parents_confidence: map-elites: the level below which a class counts as unmet for parent
            selection (default: ``target_confidence``; 0.9999 gives foolbench 0.1.0's parents at any
            target).
        batch_size: genomes per generation.
        mutation_rate: direct encoding only: mutations drawn per pixel, at positions drawn with
            replacement, so about ``1 - exp(-mutation_rate)`` of the pixels change (default 0.02, the MNIST recipe's).
        eta: polynomial-mutation index (default: direct 1, cppn 15).
        max_nodes: cppn encoding only: node slots per genome (default 32).
        max_connections: cppn encoding only: connections per genome (default 128).
        method: ``"map-elites"`` (:class:`~foolbench.search.MAPElites`) or ``"random-search"``
            (:class:`~foolbench.search.RandomSearch`: fresh random genomes every generation, the
            equal-budget baseline); the names of the suite method kinds.
        strength: map-elites: constant mutation strength (CPPN: operator rates and weight steps;
            direct: the mutation rate), 1 by default; CPPN searches at 2 ended higher on 8 of 10
            seeds of the 10-class EfficientNet-Lite0 CPU proxy (``benchmarks/bench_search_ablation.py``).
        precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` to score children under autocast
            (faster on GPUs and on CPUs with bf16 units, slower on CPUs without them), or
            ``"auto"``: ``"bf16"`` where :func:`foolbench.models.native_bf16` finds those units on
            ``device``, else ``"fp32"``; the summary records the precision used. The reported
            confidences are always the float32 model's.
        verify: with a reduced ``precision``: re-score in float32 the children that beat an elite
            before they compete, so the archive holds float32 scores only (with ``"auto"``: when it
            picks ``"bf16"``; the summary records whether it applied).
        compile: score children with the model through ``torch.compile``, its weights frozen into
            the graph (:class:`~foolbench.models.TorchClassifier`'s ``compile``: EfficientNet-Lite0
            1.4-1.7x the images/s on 2-core CPUs, after 10-30 s of compilation); the reported
            confidences are the uncompiled model's.
        polish: map-elites: every 200 generations, move the connection weights (CPPN) or pixels (direct)
            of the elites between 90% and the parents' level by 50 gradient steps
            (:class:`~foolbench.search.GradientPolish`; white box: the model must be differentiable,
            the summary counts its ``gradient_images``). On the 10-class EfficientNet-Lite0 CPU proxy it
            met the 99% median aim on more seeds (docs/methods/evolution.md).
        islands: map-elites: independent archives, the best over them reported per class
            (:class:`~foolbench.search.MAPElites`'s ``islands``; 1: the paper's single archive).
        seed: seed of the search, an int in [0, 2**64).
        image_size: raw image side of ImageNet models.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (default CPU).
        checkpoint: checkpoint file.
        checkpoint_every: generations between checkpoints.
        fresh: delete an existing checkpoint and outputs first.
        progress: show a progress bar.
        title: heading of report.md.
        command: the command name recorded in summary.json.

    Returns:
        The summary written to ``summary.json``.

    Raises:
        InvalidArgumentError: a bad setting (the message names it; an earlier run's files in ``out`` are
            left as they were).
        CheckpointError: the checkpoint is corrupt or from other settings.
        FolderBusyError: another run holds ``out``.
        OSError: ``out`` cannot be written.

    Examples:
        >>> import tempfile, foolbench as fb
        >>> with tempfile.TemporaryDirectory() as out:
        ...     s = fb.search.run_evolution(out, classes=["3"], generations=2, progress=False)
        >>> s["schema"], s["command"], s["results"]["evaluations"]
        ('foolbench.summary/1', 'evolve', 128)
    """
    settings = {k: v for k, v in locals().items() if k not in ("out", "progress", "fresh", "command", "title")}
    _checks.boolean("fresh", fresh)
    _checks.boolean("progress", progress)
    settings["checkpoint"] = None if checkpoint is None else str(checkpoint)
    _json_settings(settings)

    _checks.choice("method", method, ("map-elites", "random-search"))
    _checks.choice("precision", precision, ("fp32", "bf16", "fp16", "auto"))
    _checks.boolean("verify", verify)
    _checks.boolean("compile", compile)
    _checks.boolean("polish", polish)
    if polish and method == "random-search":
        raise InvalidArgumentError("polish applies to the map-elites method only (random search keeps no elites)")
    islands = _checks.positive_int("islands", islands)
    if islands > 1 and method == "random-search":
        raise InvalidArgumentError(
            f"islands applies to the map-elites method only (random search breeds nothing), got {islands}"
        )
    auto = precision == "auto"
    if auto:  # resolved here, so the checkpoint and summary hold the precision used
        precision = auto_precision(_checks.torch_device("device", device))
        verify = verify and precision != "fp32"
        settings["precision"], settings["verify"] = precision, verify
    _encoding_settings(encoding, mutation_rate=mutation_rate, max_nodes=max_nodes, max_connections=max_connections)
    target_confidence = _checks.real("target_confidence", target_confidence, low=0.0, high=1.0, low_open=True)
    strength = _checks.real("strength", strength, low=0.0, low_open=True)
    for key, value in (("mutation_rate", mutation_rate), ("eta", eta)):
        if method == "random-search" and value is not None:
            raise InvalidArgumentError(
                f"{key} applies to the map-elites method only (random search mutates nothing), got {value!r}"
            )
    if method == "random-search" and strength != 1.0:
        raise InvalidArgumentError(
            f"strength applies to the map-elites method only (random search mutates nothing), got {strength:g}"
        )
    if parents_confidence is None:
        unmet = target_confidence
    else:
        unmet = _checks.real("parents_confidence", parents_confidence, low=0.0, high=1.0, low_open=True)
        if method == "random-search":
            raise InvalidArgumentError(
                f"parents_confidence applies to the map-elites method only (random search breeds from no "
                f"parents), got {parents_confidence:g}"
            )
    if verify and precision == "fp32":
        raise InvalidArgumentError(
            "verify needs a reduced precision (bf16 or fp16) whose scores it re-scores in float32, got fp32"
        )
    # the run's own checks, here: before anything in the folder (an earlier run's outputs, with fresh) is deleted
    if max_evaluations is None and generations is None:
        raise InvalidArgumentError("run_evolution needs a budget: give max_evaluations and/or generations")
    _checks.optional_positive_int("max_evaluations", max_evaluations)
    _checks.optional_positive_int("generations", generations)
    _checks.positive_int("checkpoint_every", checkpoint_every)

    def prepare(folder: Path) -> Callable[[], Computed]:
        clf = _model(model, device, image_size, precision, compile)
        shape = clf.input_shape
        genomes = _encoding(
            encoding, shape, mutation_rate=mutation_rate, eta=eta, max_nodes=max_nodes, max_connections=max_connections
        )
        picked = _classes(classes, clf)
        searcher: MAPElites
        if method == "random-search":
            searcher = RandomSearch(clf, genomes, classes=picked, batch_size=batch_size, seed=seed, verify=verify)
        else:
            searcher = MAPElites(
                clf,
                genomes,
                classes=picked,
                batch_size=batch_size,
                seed=seed,
                mutation_schedule=strength,  # a constant strength; 1 is the encoding's own rates, as None
                verify=verify,
                parents=UnmetFirst(confidence=unmet),  # parents from the classes below the target (by default)
                polish=GradientPolish(below=unmet, above=0.9 if unmet > 0.9 else 0.0) if polish else None,
                islands=islands,
            )
        ckpt = folder / "checkpoint.pt" if checkpoint is None else Path(checkpoint)
        if ckpt.exists() and not ckpt.is_file():  # neither a resume nor fresh=True could use it
            raise CheckpointError(
                f"checkpoint path {str(ckpt)!r} is not a regular file (a directory?); give a file path"
            )
        if ckpt.parent.exists() and not ckpt.parent.is_dir():  # found at the first save, after the search ran
            raise CheckpointError(f"checkpoint path {str(ckpt)!r} is inside {str(ckpt.parent)!r}, which is a file")
        for up in ckpt.parent.parents:
            if up.exists() and not up.is_dir():
                raise CheckpointError(f"checkpoint path {str(ckpt)!r} is inside {str(up)!r}, which is a file")

        def compute() -> Computed:
            if fresh:
                _fresh(folder, ("images.png", "images.pt", "report.md", "summary.json"))
                ckpt.unlink(missing_ok=True)
            try:
                result = searcher.run(
                    max_evaluations=max_evaluations,
                    generations=generations,
                    target_confidence=target_confidence,
                    progress=progress,
                    checkpoint=ckpt,
                    checkpoint_every=checkpoint_every,
                    # a checkpoint refused (other settings, past this budget) leaves the earlier summary
                    callbacks=[_ForgetSummary(folder)],
                )
            except CheckpointError as err:
                hint = (
                    f"; precision='auto' picked {precision!r} on this machine: give the checkpoint's precision "
                    "explicitly to resume it"
                    if auto and "precision" in str(err)
                    else ""
                )
                raise CheckpointError(f"{err} (start over with fresh=True{hint})") from err
            what = "Random-search images" if method == "random-search" else "Evolved fooling images"
            result.save(folder, title=title or f"{what} for {model} ({encoding} encoding)")
            results, extra = _search_summary(result)
            if polish:  # the white-box work, apart from the evaluations
                results["gradient_images"] = searcher.gradient_images
            return results, extra

        return compute

    return _locked_run(out, command, settings, prepare, forget_late=True)


def _up_to_date(folder: Path, command: str, settings: dict[str, Any], files: Sequence[str]) -> dict[str, Any] | None:
    """The saved summary when ``folder`` holds every output of the same command and settings."""
    saved = _io.read_summary(folder / "summary.json")
    expected = _io.summary(command, settings, {})
    if saved is None or not all((folder / name).is_file() for name in files):
        return None
    kept = {k: v for k, v in dict(saved.get("settings") or {}).items() if k != "search"}
    same = saved.get("command") == command and kept == settings
    same = same and saved.get("versions", {}).get("foolbench") == expected["versions"]["foolbench"]
    return saved if same else None


def run_ascent(
    out: str | Path,
    *,
    model: str = "lenet-mnist",
    classes: Sequence[int | str] | None = None,
    steps: int = 500,
    lr: float = 0.01,
    l2_decay: float = 0.0,
    blur_every: int = 0,
    blur_sigma: float | None = None,
    jitter: int = 0,
    start: str = "noise",
    target_confidence: float = 0.9999,
    seed: int = 0,
    image_size: int | None = None,
    device: str | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Gradient-ascent fooling images for a zoo model, written under ``out``.

    Gradient ascent has no checkpoint: when ``out`` already holds the outputs of a run with the
    same settings (and foolbench version) they are kept and their summary is returned without
    recomputing; ``fresh=True`` recomputes. Writes ``images.png``, ``images.pt``, ``report.md``,
    ``summary.json``.

    Args:
        out: output folder (created; locked while the run writes to it).
        model: zoo model name.
        classes: target classes as indices or class names (default: all).
        steps, lr, l2_decay, blur_every, jitter, start: see :class:`GradientAscent`.
        blur_sigma: Gaussian blur sigma in pixels (None: 0.5); given with ``blur_every=0`` it is refused
            (it would change nothing).
        target_confidence: an image stops changing once it reaches this confidence.
        seed: seed of the start noise and jitter, an int in [0, 2**64).
        image_size: raw image side of ImageNet models.
        device: ``"cpu"``, ``"cuda"``... (default CPU).
        fresh: recompute even when ``out`` holds the same run.
        progress: show a tqdm bar over the ascent's steps.

    Returns:
        The summary written to ``summary.json`` (with ``"reused": True`` when nothing was recomputed).

    Raises:
        InvalidArgumentError: a bad setting (the message names it; an earlier run's files in ``out`` are
            left as they were).
        FolderBusyError: another run holds ``out``.
        OSError: ``out`` cannot be written.

    Examples:
        >>> import tempfile, foolbench as fb
        >>> with tempfile.TemporaryDirectory() as out:
        ...     first = fb.search.run_ascent(out, classes=[1, "7"], steps=3)
        ...     again = fb.search.run_ascent(out, classes=[1, "7"], steps=3)
        >>> first["results"]["classes"], "reused" in first, again["reused"]
        (2, False, True)
    """
    if blur_sigma is not None and blur_every == 0:
        raise InvalidArgumentError(f"blur_sigma={blur_sigma!r} has no effect with blur_every=0: blurring is off")
    blur_sigma = 0.5 if blur_sigma is None else blur_sigma  # before the settings: outputs of 0.1.0 still reused
    settings = {k: v for k, v in locals().items() if k not in ("out", "progress", "fresh")}
    _checks.boolean("fresh", fresh)
    _checks.boolean("progress", progress)
    _json_settings(settings)

    if target_confidence is not None:  # None: every step, as GradientAscent.run
        _checks.real("target_confidence", target_confidence, low=0.0, high=1.0, low_open=True)

    def prepare(folder: Path) -> Callable[[], Computed]:
        clf = _model(model, device, image_size)
        search = GradientAscent(
            clf,
            steps=steps,
            lr=lr,
            l2_decay=l2_decay,
            blur_every=blur_every,
            blur_sigma=blur_sigma,
            jitter=jitter,
            start=start,
            seed=seed,
        )
        picked = _classes(classes, clf)

        def compute() -> Computed:
            result = search.run(picked, target_confidence=target_confidence, progress=progress)
            result.save(folder, title=f"Gradient-ascent fooling images for {model}")
            return _search_summary(result)

        return compute

    files = () if fresh else ("images.png", "images.pt", "report.md", "summary.json")
    return _locked_run(out, "ascend", settings, prepare, reuse=files)


def run_uap(
    out: str | Path,
    *,
    model: str = "lenet-mnist",
    eps: float = 0.3,
    norm: str = "inf",
    method: str = "sgd",
    delta: float = 0.2,
    max_passes: int = 20,
    batch_size: int = 32,
    fit: int = 500,
    held_out: int = 1000,
    seed: int = 0,
    device: str | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit a universal perturbation on real MNIST digits and measure it on held-out digits.

    Fitting has no checkpoint: when ``out`` already holds the outputs of a fit with the same
    settings (and foolbench version) they are kept and their summary is returned without
    refitting; ``fresh=True`` refits. Writes ``images.png``, ``perturbation.pt``, ``report.md``,
    ``summary.json``.

    Args:
        out: output folder (created; locked while the run writes to it).
        model: a zoo model taking 1x28x28 inputs.
        eps, norm, method, delta, max_passes, batch_size: see :class:`UniversalPerturbation`.
        fit: fitting digits, from the train split.
        held_out: held-out digits, from the test split.
        seed: seed of the shuffling, an int in [0, 2**64).
        device: ``"cpu"``, ``"cuda"``... (default CPU).
        fresh: refit even when ``out`` holds the same fit.
        progress: show a tqdm bar over the fit's mini-batches (of all passes).

    Returns:
        The summary written to ``summary.json`` (with ``"reused": True`` when nothing was refitted).

    Raises:
        InvalidArgumentError: a bad setting (the message names it; an earlier run's files in ``out`` are
            left as they were), or a model that does not take MNIST digits.
        FolderBusyError: another run holds ``out``.
        OSError: ``out`` cannot be written.

    Examples:
        >>> import tempfile, foolbench as fb
        >>> with tempfile.TemporaryDirectory() as out:
        ...     s = fb.search.run_uap(out, fit=10, held_out=10, max_passes=1)
        >>> s["command"], s["settings"]["eps"], s["results"]["held_out_images"]
        ('uap', 0.3, 10)
    """
    settings = _json_settings({k: v for k, v in locals().items() if k not in ("out", "progress", "fresh")})
    _checks.boolean("fresh", fresh)
    _checks.boolean("progress", progress)
    for name, value, split in (("fit", fit, "train"), ("held_out", held_out, "test")):
        available = len(mnist_digits(split)[1])
        if _checks.positive_int(name, value) > available:
            raise InvalidArgumentError(
                f"{name} must be at most {available:,} (the shipped {split} digits), got {value:,}"
            )

    uap = UniversalPerturbation(
        eps=eps, norm=norm, method=method, delta=delta, max_passes=max_passes, batch_size=batch_size, seed=seed
    )

    def prepare(folder: Path) -> Callable[[], Computed]:
        clf = _model(model, device, None)
        if tuple(clf.input_shape) != (1, 28, 28):
            raise InvalidArgumentError(f"model must take 1x28x28 MNIST inputs, got {model!r} with {clf.input_shape}")
        x_fit = mnist_digits("train", limit=fit)[0]
        x_held = mnist_digits("test", limit=held_out)[0]

        def compute() -> Computed:
            fitted = uap.fit(clf, x_fit, progress=progress)
            held_rate = fooling_rate(clf, x_held, fitted.perturbation)
            _write_uap(folder, fitted, x_held, clf.predict((x_held[:9] + fitted.perturbation.cpu()).clamp(0, 1)))
            results = {
                "passes": fitted.passes,
                "seconds": round(fitted.seconds, 3),
                "fitting_images": int(x_fit.shape[0]),
                "fitting_fooling_rate": fitted.fooling_rate,
                "held_out_images": int(x_held.shape[0]),
                "held_out_fooling_rate": held_rate,
                "history": list(fitted.history),
            }
            _io.write_text(folder / "report.md", _uap_report(model, fitted, results))
            return results, {}

        return compute

    files = () if fresh else ("images.png", "perturbation.pt", "report.md", "summary.json")
    return _locked_run(out, "uap", settings, prepare, reuse=files)


def _write_uap(folder: Path, fitted: Any, held: torch.Tensor, predicted: torch.Tensor) -> None:
    v = fitted.perturbation.cpu()
    shown = (v - v.min()) / (v.max() - v.min()).clamp_min(1e-12)
    perturbed = (held[:9] + v).clamp(0, 1)
    captions = ["perturbation"] + [f"-> {int(p)}" for p in predicted.tolist()]
    _io.save_grid(torch.cat([shown[None], perturbed]), captions, folder / "images.png")
    _io.save_torch(
        folder / "perturbation.pt",
        {"perturbation": v, "eps": fitted.eps, "norm": fitted.norm, "method": fitted.method},
    )


def _uap_report(model: str, fitted: Any, results: dict[str, Any]) -> str:
    lines = [
        f"# Universal perturbation for {model}",
        "",
        f"{fitted.method}, L-{fitted.norm} eps = {fitted.eps:g}, {fitted.passes} passes in {fitted.seconds:.1f} s.",
        "",
        "| images | fooling rate |",
        "|---|---:|",
        f"| fitting ({results['fitting_images']} real digits) | {results['fitting_fooling_rate']:.3f} |",
        f"| held out ({results['held_out_images']} real digits) | {results['held_out_fooling_rate']:.3f} |",
        "",
        "![perturbation and perturbed digits](images.png)",
        "",
    ]
    return "\n".join(lines)
