"""The built-in method kinds of a suite: random, map-elites, random-search, gradient-ascent, pgd, uap.

Every call into :mod:`foolbench.search` and :mod:`foolbench.encodings` made by the bench's
methods is in this module.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from foolbench.bench._params import Params, param
from foolbench.bench._registry import CellOutput, Context, Method, Target, fmt, register_method, table
from foolbench.errors import ConfigError

__all__ = [
    "GradientAscentMethod",
    "MapElitesMethod",
    "PGDMethod",
    "RandomMethod",
    "RandomSearchMethod",
    "UAPMethod",
    "encoding",
]


def encoding(name: str, shape: Any, *, mutation_rate: float = 0.02, eta: float | None = None) -> Any:
    """The suite's encodings: ``"direct"`` (pixels, the MNIST recipe) or ``"cppn"``."""
    from foolbench.encodings import CPPNEncoding, DirectEncoding

    if name == "cppn":
        return CPPNEncoding(shape, eta=eta or 15.0)
    if name == "direct":
        return DirectEncoding(shape, mutation_rate=mutation_rate, eta=eta or 1.0)
    raise ConfigError(f"encoding must be 'direct' or 'cppn', got {name!r}")


def _detected(target: Target, images: torch.Tensor) -> dict[str, Any]:
    return {} if target.detector is None else {"detection_rate": target.detector.detection_rate(images)}


@dataclass(frozen=True)
class RandomParams(Params):
    """Parameters of ``RandomMethod``."""

    n: int = param(256, "random images per encoding", type="int", lo=1, hi=1_000_000)


@register_method
class RandomMethod(Method[RandomParams]):
    """Generation-0 images (noise and CPPN) scored by the model: the paper's baseline."""

    kind = "random"
    title = "Random generation-0 images (the paper's baseline)"
    rates = (
        *(
            f"{e}_{m}"
            for e in ("direct", "cppn")
            for m in ("median_confidence", "max_confidence", "share_at_0.99", "top_class_share", "mean_pixel")
        ),
        "data_mean_pixel",
    )
    Params = RandomParams

    def run(self, target: Target, ctx: Context) -> CellOutput:
        clf = target.classifier
        metrics: dict[str, Any] = {}
        gen = torch.Generator().manual_seed(ctx.seed)
        lo, hi = clf.bounds
        names = getattr(clf, "class_names", None)
        for name in ("direct", "cppn"):
            enc = encoding(name, clf.input_shape)
            images = enc.render(enc.sample(int(self.params.n), gen))
            probs = clf.probs(images * (hi - lo) + lo)
            conf = probs[:, target.classes].max(1).values.double().cpu()
            metrics[f"{name}_median_confidence"] = float(conf.median())
            metrics[f"{name}_max_confidence"] = float(conf.max())
            metrics[f"{name}_share_at_0.99"] = float((conf >= 0.99).double().mean())
            # which class takes the random images (e.g. the shipped LeNet calls all noise an 8)
            top = torch.bincount(probs.argmax(1).cpu(), minlength=clf.num_classes)
            metrics[f"{name}_top_class"] = int(top.argmax())
            metrics[f"{name}_top_class_name"] = str(names[int(top.argmax())]) if names else str(int(top.argmax()))
            metrics[f"{name}_top_class_share"] = float(top.max()) / int(self.params.n)
            metrics[f"{name}_mean_pixel"] = float(images.double().mean())
        test = ctx.test[0]
        metrics["data_mean_pixel"] = float(((test.double() - lo) / (hi - lo)).mean().clamp(0, 1))
        return CellOutput(metrics)

    @classmethod
    def report(cls, cells: list[dict[str, Any]]) -> list[str]:
        def pair(m: dict[str, Any], e: str) -> str:
            return f"{fmt(m[f'{e}_median_confidence'])} / {fmt(m[f'{e}_max_confidence'])}"

        def taken(m: dict[str, Any], e: str) -> str:
            if f"{e}_top_class_share" not in m:  # a cell from before this column
                return "-"
            return f"{m[f'{e}_top_class_name']} ({fmt(m[f'{e}_top_class_share'])})"

        rows = [[c["model"], c["defense"], c["method"], pair(c["metrics"], "direct"), taken(c["metrics"], "direct"),
                 pair(c["metrics"], "cppn"), taken(c["metrics"], "cppn")] for c in cells]  # fmt: skip
        header = [
            "model",
            "defense",
            "method",
            "noise: median / max top confidence",
            "noise: most predicted class (share)",
            "CPPN: median / max top confidence",
            "CPPN: most predicted class (share)",
        ]
        return [f"## {cls.title}", "", *table(header, rows), ""]


_CLASSES = param(None, "target classes (default: every class)", type="ints", lo=0)
_FOOLING_RATES = ("fooled_0_99", "fooled_0_996", "fooled_0_9999", "median_confidence", "detection_rate")


GRID_LIMIT = 25  # classes shown in a cell's image grid (the most confident ones when there are more)
KEEP_IMAGES_LIMIT = 100  # a fooling cell keeps its elites as tensors only up to this many classes


def _fooling_metrics(res: Any, classes: list[int], target: Target, ctx: Context) -> CellOutput:
    conf = res.confidence.double()
    reach = {t: res.evaluations_to(t) for t in (0.99, 0.9999)}
    grid = ctx.scratch / "grid.png"
    shown = res
    if len(classes) > GRID_LIMIT:  # the top ones by confidence: a 1,000-class grid is unreadable and huge
        shown = res.most_confident(GRID_LIMIT)
    shown.save_png(grid)
    name = f"images/{ctx.key}.png"
    metrics = {
        "classes": len(classes),
        "fooled_0_99": float((conf >= 0.99).double().mean()),
        "fooled_0_996": float((conf >= 0.996).double().mean()),
        "fooled_0_9999": float((conf >= 0.9999).double().mean()),
        "median_confidence": float(conf.median()),
        "evaluations": int(res.evaluations),
        "seconds": round(res.seconds, 2),
        "median_evaluations_to_0_99": _median_reached(reach[0.99]),
        "median_evaluations_to_0_9999": _median_reached(reach[0.9999]),
        "curve": _curve(res.history.evaluations, res.history.confidence),
        "curve_quantiles": _curve_quantiles(res.history.evaluations, res.history.confidence),
        "class_indices": [int(c) for c in classes],
        "confidence": [float(c) for c in conf],
        "grid": name,
        "grid_classes": [int(c) for c in shown.classes],
        **_detected(target, res.images),
    }
    # the elites travel back and are saved beside the cell (the diversity across runs reads them), except for
    # searches over many classes: 1,000 ImageNet elites are 600 MB (the top ones are in the grid, and the
    # search's checkpoint keeps every genome)
    tensors = {"images": res.images.cpu()} if len(classes) <= KEEP_IMAGES_LIMIT else {}
    return CellOutput(metrics, tensors, {name: grid.read_bytes()})


def _fooling_report(title: str, cells: list[dict[str, Any]]) -> list[str]:
    header = ["model", "defense", "method", ">= 99%", ">= 99.99%", "median conf.", "evaluations"]
    header += ["evals to 99.99% (median)", "detected"]
    rows = [
        [
            c["model"], c["defense"], c["method"], fmt(c["metrics"]["fooled_0_99"]),
            fmt(c["metrics"]["fooled_0_9999"]), fmt(c["metrics"]["median_confidence"]),
            f"{c['metrics']['evaluations']:,}", fmt(c["metrics"]["median_evaluations_to_0_9999"], pct=False),
            fmt(c["metrics"].get("detection_rate")),
        ]
        for c in cells
    ]  # fmt: skip
    return [f"## {title}", "", *table(header, rows), ""]


@dataclass(frozen=True)
class MapElitesParams(Params):
    """Parameters of ``MapElitesMethod``."""

    encoding: str = param("direct", "genome encoding", type="str", choices=("direct", "cppn"))
    max_evaluations: int = param(30_000, "evaluation budget", type="int", lo=1)
    max_seconds: float | None = param(None, "time budget in seconds (default: none)", type="float", lo=0, lo_open=True)
    batch_size: int = param(64, "images per generation", type="int", lo=1, hi=1_000_000)
    mutation_rate: float = param(
        0.02,
        "mutations drawn per pixel, with replacement: about 1 - exp(-rate) of the pixels change (direct)",
        type="float",
        lo=0,
        hi=1,
        lo_open=True,
    )
    eta: float | None = param(
        None, "polynomial-mutation eta (default 1 direct, 15 CPPN)", type="float", lo=0, lo_open=True
    )
    target_confidence: float = param(
        0.9999, "stop once every class reaches it (parents come from the classes below it first)",
        type="float", lo=0, hi=1, lo_open=True,
    )  # fmt: skip
    classes: list[int] | None = _CLASSES
    parents: str = param(
        "unmet-first", "parent selection (uniform: the paper's; the others favour classes below target_confidence)",
        type="str",
        choices=("unmet-first", "uniform", "curiosity", "weakest"),
    )  # fmt: skip
    decay_factor: float = param(
        1.0, "multiply the mutation strength by this every decay_every generations (1: constant)",
        type="float", lo=0, hi=1, lo_open=True,
    )  # fmt: skip
    decay_every: int = param(1000, "generations per mutation decay step", type="int", lo=1, hi=10**9)
    strength: float = param(
        1.0, "constant mutation strength (CPPN: operator rates and weight steps; direct: the rate) when "
        "decay_factor is 1", type="float", lo=0, hi=100, lo_open=True,
    )  # fmt: skip
    runs: int = param(
        1, "independent runs, each its own cell and seed (the report measures diversity across them, "
        "for searches over at most 100 classes: the elites of more are not kept)",
        type="int", lo=1, hi=100,
    )  # fmt: skip
    warmup: float = param(
        0.0, "share of max_evaluations spent first on every class of the model, whose elites then seed "
        "the search on `classes` (stepping stones; 0: none)", type="float", lo=0, hi=0.9,
    )  # fmt: skip
    crossover: float = param(
        0.0, "share of the children bred from two elites before mutation (0: none)", type="float", lo=0, hi=1
    )
    precision: str = param(
        "fp32", "precision the search scores children at (bf16/fp16: autocast on the model); the final "
        "confidences are always the float32 model's, the curve and the target stop are the search's "
        "scores, float32 only with verify", type="str", choices=("fp32", "bf16", "fp16"),
    )  # fmt: skip
    verify: bool = param(
        False, "re-score children that beat an elite with the float32 model before they compete "
        "(MAPElites(verify=True); with precision bf16/fp16)", type="bool",
    )  # fmt: skip
    near_confidence: float | None = param(
        None, "children of elites at or above this confidence, below 1, are mutated at near_strength "
        "or refined at near_refine (fb.search.NearStrength; default: none)", type="float", lo=0, hi=1, lo_open=True, late=True,
    )  # fmt: skip
    near_strength: float = param(
        1.0, "mutation strength of the children of elites at near_confidence", type="float", lo=0, hi=100,
        lo_open=True, late=True,
    )  # fmt: skip
    near_refine: float | None = param(
        None, "refine the children of elites at near_confidence at this scale instead of mutating them: "
        "only some CPPN weights move, by small steps (NearStrength(refine=); cppn only; near_strength "
        "then stays at its default; default: mutate at near_strength)", type="float", lo=0, hi=1, lo_open=True, late=True,
    )  # fmt: skip
    islands: int = param(
        1, "independent archives, each with one elite per class: a child competes in its parent's island "
        "only, a class met in one island draws no parents in any, the best over the islands is reported "
        "(MAPElites(islands=); 1: the paper's single archive; at most batch_size)", type="int", lo=1, hi=64,
        late=True,
    )  # fmt: skip
    polish_every: int | None = param(
        None, "every this many generations, Adam steps through the model on the weights (CPPN) or pixels "
        "(direct) of the elites between polish_above and target_confidence (fb.search.GradientPolish: "
        "white box, through the defense too: a median or bit-depth squeezer passes the gradient straight through, "
        "BPDA; default: none)",
        type="int", lo=1, hi=10**9, late=True,
    )  # fmt: skip
    polish_steps: int = param(50, "Adam steps per polish", type="int", lo=1, hi=10_000, late=True)
    polish_lr: float = param(
        0.005, "Adam's step size of the polish, in gene units", type="float", lo=0, lo_open=True, late=True
    )
    polish_above: float = param(
        0.9, "polish only the elites at or above this confidence (0: all below target_confidence)",
        type="float", lo=0, hi=1, late=True,
    )  # fmt: skip
    polish_from: float | None = param(
        None, "share of max_evaluations (warm-up included) from which every generation polishes, below 1 "
        "(an endgame; default: none)",
        type="float", lo=0, hi=1, late=True,
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.near_confidence == 1.0:
            raise ConfigError("map-elites: near_confidence must be in (0, 1), as in NearStrength, got 1.0")
        if self.near_refine is not None:
            if self.near_confidence is None:
                raise ConfigError(
                    f"map-elites: near_refine (got {self.near_refine:g}) needs near_confidence, the confidence "
                    "from which an elite's children are refined"
                )
            if self.near_strength != 1.0:
                raise ConfigError(
                    f"map-elites: give near_strength (got {self.near_strength:g}) or near_refine (got "
                    f"{self.near_refine:g}), not both: refined children are not mutated"
                )
            if self.encoding != "cppn":
                raise ConfigError(
                    f"map-elites: near_refine (got {self.near_refine:g}) needs encoding 'cppn' (refine() moves "
                    f"CPPN weights), got {self.encoding!r}"
                )
        elif self.near_confidence is not None and self.decay_factor == 1.0 and self.near_strength == self.strength:
            raise ConfigError(
                f"map-elites: near_confidence (got {self.near_confidence:g}) with near_strength equal to strength "
                f"({self.strength:g}) changes nothing: give near_strength another value"
            )
        if self.near_strength != 1.0 and self.near_confidence is None:
            raise ConfigError(
                f"map-elites: near_strength (got {self.near_strength:g}) needs near_confidence, the confidence "
                "from which an elite's children are mutated at it"
            )
        if self.decay_factor != 1.0 and self.strength != 1.0:
            raise ConfigError(
                f"map-elites: give strength (constant, got {self.strength:g}) or decay_factor (decaying from 1, "
                f"got {self.decay_factor:g}), not both"
            )
        # settings that would change nothing are refused, not ignored (a cell named after them would mislead)
        if self.decay_every != 1000 and self.decay_factor == 1.0:
            raise ConfigError(f"map-elites: decay_every (got {self.decay_every}) needs a decay_factor below 1")
        if self.encoding == "cppn" and self.mutation_rate != 0.02:
            raise ConfigError(
                f"map-elites: mutation_rate (got {self.mutation_rate:g}) applies to the direct encoding only; "
                "a CPPN mutates through its operator rates: use strength"
            )
        _verify_needs_reduced_precision("map-elites", self.verify, self.precision)
        if self.polish_every is None:
            tuned = [
                f"{name} (got {getattr(self, name):g})"
                for name in ("polish_steps", "polish_lr", "polish_above", "polish_from")
                if getattr(self, name) != getattr(type(self), name)
            ]
            if tuned:
                raise ConfigError(
                    f"map-elites: {', '.join(tuned)} needs polish_every, the polish's period in generations"
                )
        elif self.polish_from == 1.0:
            raise ConfigError(
                "map-elites: polish_from must be below 1 (from the whole budget on, nothing would polish)"
            )
        elif self.polish_above >= self.target_confidence:
            raise ConfigError(
                f"map-elites: polish_above (got {self.polish_above:g}) must be below target_confidence "
                f"({self.target_confidence:g}), the level a polish aims at"
            )
        if self.islands > self.batch_size:  # MAPElites refuses it too, but only when each cell runs
            raise ConfigError(
                f"map-elites: islands (got {self.islands}) must be at most batch_size (got {self.batch_size}): "
                "generation 0 deals its genomes out to the islands in turn, and an island without one would stay empty"
            )
        if self.warmup > 0 and self.classes is None:
            raise ConfigError(
                f"map-elites: warmup (got {self.warmup:g}) needs classes = [...], a subset it then focuses on "
                "(without classes the search already covers every class)"
            )


def _verify_needs_reduced_precision(kind: str, verify: bool, precision: str) -> None:
    if verify and precision == "fp32":
        raise ConfigError(f"{kind}: verify = true needs precision = 'bf16' or 'fp16' (it re-scores those in fp32)")


def _fast_stop(params: Mapping[str, Any]) -> bool:
    """Whether a search cell's stop at its target moved in this release (fast scores, unverified elites)."""
    return params.get("precision", "fp32") != "fp32" and not params.get("verify", False)


def _at_precision(clf: Any, precision: str) -> Any:
    """``clf`` scoring at ``precision``: a TorchClassifier's ``replace(precision=...)``; fp32 leaves it as is."""
    if precision == "fp32":
        return clf
    from foolbench.models import TorchClassifier

    if not isinstance(clf, TorchClassifier):
        raise ConfigError(
            f"precision = {precision!r} needs a model the suite runs as a TorchClassifier (an undefended zoo "
            f"or factory model); this cell's model is a {type(clf).__name__}: use precision = 'fp32' here"
        )
    return clf.replace(precision=precision)


@register_method
class MapElitesMethod(Method[MapElitesParams]):
    """MAP-Elites evolution of fooling images (black box: scores only)."""

    kind = "map-elites"
    title = "Fooling images: evolution (MAP-Elites)"
    rates = _FOOLING_RATES
    Params = MapElitesParams

    def check(self, num_classes: int) -> str | None:
        """The default checks, and a warm-up only where ``classes`` leaves some of the model's classes out."""
        if problem := super().check(num_classes):
            return problem
        if self.params.warmup > 0 and len(self.params.classes or range(num_classes)) == num_classes:
            return "warmup needs classes to leave some of the model's classes out (with all of them it has no use)"
        return None

    def run(self, target: Target, ctx: Context) -> CellOutput:
        from foolbench.search import GradientPolish, MAPElites, NearStrength, StepDecay
        from foolbench.search._operators import parent_selector

        p = self.params
        clf = _at_precision(target.classifier, p.precision)
        classes = p.classes or target.classes
        enc = encoding(p.encoding, clf.input_shape, mutation_rate=p.mutation_rate, eta=p.eta)
        schedule: Any = p.strength  # a constant strength (1: the encoding's own rates, as None)
        if p.decay_factor != 1.0:
            schedule = StepDecay(factor=p.decay_factor, every=p.decay_every)
        common: dict[str, Any] = {
            "batch_size": p.batch_size, "seed": ctx.seed, "mutation_schedule": schedule,
            "crossover": p.crossover, "verify": p.verify,
        }  # fmt: skip
        if p.near_confidence is not None:
            near: dict[str, Any] = (
                {"near_strength": p.near_strength} if p.near_refine is None else {"refine": p.near_refine}
            )
            common["mutation_schedule"] = NearStrength(schedule, near_confidence=p.near_confidence, **near)
        initial, spent, spent_seconds = None, 0, 0.0
        if p.warmup > 0 and len(classes) < clf.num_classes:
            warm = MAPElites(clf, enc, parents=parent_selector(p.parents, confidence=p.target_confidence), **common)
            warm.run(
                max_evaluations=max(1, int(p.warmup * p.max_evaluations)), max_seconds=p.max_seconds,
                progress=ctx.show_progress, checkpoint=ctx.scratch / "map-elites-warmup.pt",
            )  # fmt: skip
            initial, spent = warm.best_genomes()[torch.tensor(classes, device=warm.device)], warm.evaluations
            spent_seconds = warm.seconds
        # max_seconds bounds the warm-up and the search together, as max_evaluations does
        seconds_left = None if p.max_seconds is None else max(p.max_seconds - spent_seconds, 1e-6)
        polish = None
        if p.polish_every is not None:  # the endgame's share counts the warm-up's evaluations, as the budget does
            start = None if p.polish_from is None else max(0, round(p.polish_from * p.max_evaluations) - spent)
            polish = GradientPolish(
                every=p.polish_every, steps=p.polish_steps, lr=p.polish_lr, below=p.target_confidence,
                above=p.polish_above, from_evaluations=start,
            )  # fmt: skip
        # a selector of its own (a warm-up's curiosity scores are per model class): unmet means below the target
        parents = parent_selector(p.parents, confidence=p.target_confidence)
        search = MAPElites(
            clf, enc, classes=classes, initial=initial, parents=parents, polish=polish, islands=p.islands, **common
        )
        res = search.run(
            max_evaluations=max(1, p.max_evaluations - spent), max_seconds=seconds_left,
            target_confidence=p.target_confidence, progress=ctx.show_progress,
            checkpoint=ctx.scratch / "map-elites.pt",
        )  # fmt: skip
        if spent:  # count the warm-up in the budget the cell reports: its evaluations and its time
            history = type(res.history)(res.history.evaluations + spent, res.history.confidence)
            res = dataclasses.replace(
                res, evaluations=res.evaluations + spent, history=history, found_at=res.found_at + spent,
                seconds=res.seconds + spent_seconds,
            )  # fmt: skip
        return _fooling_metrics(res, classes, target, ctx)

    @classmethod
    def revision(cls, params: Mapping[str, Any]) -> int:
        """2 where the result changed after 0.1.0: parents from the classes below a target other than 0.9999.

        3 with a warm-up and ``max_seconds``: the time budget now bounds the warm-up and the search together.

        10 more with ``polish_every``: the polish now scores the genes after its last step (11, 12 or 13).

        20 more at a reduced ``precision`` without ``verify``: the stop at the target now waits for the
        float32 confidences the cell reports (it read the fast ones).

        (0.1.0 drew them from the classes below 0.9999 whatever the target.)
        """
        if params.get("warmup", 0) and params.get("max_seconds") is not None:
            base = 3  # max_seconds bounds the warm-up too, and the cell's seconds count it
        else:
            target = params.get("target_confidence", 0.9999)
            base = 2 if target != 0.9999 and params.get("parents", "unmet-first") != "uniform" else 1
        base += 10 if params.get("polish_every") is not None else 0
        return base + 20 if _fast_stop(params) else base

    @classmethod
    def report(cls, cells: list[dict[str, Any]]) -> list[str]:
        return _fooling_report(cls.title, cells)


@dataclass(frozen=True)
class RandomSearchParams(Params):
    """Parameters of ``RandomSearchMethod``."""

    encoding: str = param("cppn", "genome encoding sampled", type="str", choices=("direct", "cppn"))
    max_evaluations: int = param(30_000, "evaluation budget (give the evolution's to compare)", type="int", lo=1)
    max_seconds: float | None = param(None, "time budget in seconds (default: none)", type="float", lo=0, lo_open=True)
    batch_size: int = param(64, "random images per generation", type="int", lo=1, hi=1_000_000)
    target_confidence: float = param(0.9999, "stop once every class reaches it", type="float", lo=0, hi=1, lo_open=True)
    classes: list[int] | None = _CLASSES
    precision: str = param(
        "fp32", "precision the images are scored at (the final confidences are the float32 model's)",
        type="str", choices=("fp32", "bf16", "fp16"),
    )  # fmt: skip
    verify: bool = param(False, "re-score images that beat an elite with the float32 model", type="bool")

    def __post_init__(self) -> None:
        _verify_needs_reduced_precision("random-search", self.verify, self.precision)


@register_method
class RandomSearchMethod(Method[RandomSearchParams]):
    """Random sampling at an evolution's budget, each class's best kept: what evolution is measured against."""

    kind = "random-search"
    title = "Fooling images: random sampling at equal budget (the baseline)"
    rates = _FOOLING_RATES
    Params = RandomSearchParams

    def run(self, target: Target, ctx: Context) -> CellOutput:
        from foolbench.search import RandomSearch

        p = self.params
        clf = _at_precision(target.classifier, p.precision)
        classes = p.classes or target.classes
        enc = encoding(p.encoding, clf.input_shape)
        search = RandomSearch(clf, enc, classes=classes, batch_size=p.batch_size, seed=ctx.seed, verify=p.verify)
        res = search.run(
            max_evaluations=p.max_evaluations, max_seconds=p.max_seconds, target_confidence=p.target_confidence,
            progress=ctx.show_progress, checkpoint=ctx.scratch / "random-search.pt",
        )  # fmt: skip
        return _fooling_metrics(res, classes, target, ctx)

    @classmethod
    def revision(cls, params: Mapping[str, Any]) -> int:
        """2 at a reduced ``precision`` without ``verify``: the stop at the target waits for the float32
        confidences the cell reports (it read the fast ones)."""
        return 2 if _fast_stop(params) else 1

    @classmethod
    def report(cls, cells: list[dict[str, Any]]) -> list[str]:
        return _fooling_report(cls.title, cells)


@dataclass(frozen=True)
class GradientAscentParams(Params):
    """Parameters of ``GradientAscentMethod``."""

    steps: int = param(200, "gradient steps", type="int", lo=1, hi=10**7)
    lr: float = param(0.01, "step size", type="float", lo=0, lo_open=True)
    l2_decay: float = param(0.0, "L2 decay of the image per step", type="float", lo=0, hi=1, hi_open=True)
    blur_every: int = param(0, "blur the image every N steps (0: never)", type="int", lo=0)
    classes: list[int] | None = _CLASSES


@register_method
class GradientAscentMethod(Method[GradientAscentParams]):
    """Gradient ascent from noise on each class's score (white box)."""

    kind = "gradient-ascent"
    title = "Fooling images: gradient ascent"
    rates = _FOOLING_RATES
    Params = GradientAscentParams

    def run(self, target: Target, ctx: Context) -> CellOutput:
        from foolbench.search import GradientAscent

        p, clf = self.params, target.classifier
        classes = p.classes or target.classes
        ascent = GradientAscent(
            clf, steps=p.steps, lr=p.lr, l2_decay=p.l2_decay, blur_every=p.blur_every, seed=ctx.seed
        )
        return _fooling_metrics(ascent.run(classes, target_confidence=0.9999), classes, target, ctx)

    @classmethod
    def revision(cls, params: Mapping[str, Any]) -> int:
        """2: confidences from the float32 reference (a bf16, compiled or folded model's cells reported its own).

        3: the history records the images kept (its last row the result's, at evaluations counting every pass)
        and ``found_at`` is each image's own count, not the total.
        """
        return 3

    @classmethod
    def report(cls, cells: list[dict[str, Any]]) -> list[str]:
        return _fooling_report(cls.title, cells)


@dataclass(frozen=True)
class PGDParams(Params):
    """Parameters of ``PGDMethod``."""

    eps: list[float] = param([0.1, 0.2, 0.3], "perturbation budget(s)", type="float-or-floats", lo=0)  # noqa: RUF009
    steps: int = param(40, "PGD steps", type="int", lo=1, hi=10**6)
    norm: str = param("inf", "the norm of the budget", type="str", choices=("inf", "2"))
    n: int = param(500, "held-out images attacked (at most the test split)", type="int", lo=1)


@register_method
class PGDMethod(Method[PGDParams]):
    """Projected gradient descent on held-out images (BPDA through non-differentiable defenses)."""

    kind = "pgd"
    title = "Robust accuracy under PGD (adaptive: BPDA through non-differentiable defenses)"
    rates = ("clean_accuracy", "robust_accuracy", "detection_rate")
    transfer = "PGD transfer (share of the source's successes misclassified)"
    Params = PGDParams

    def run(self, target: Target, ctx: Context) -> CellOutput:
        from foolbench.search import PGD

        p, clf = self.params, target.classifier
        x, y = ctx.test
        xs, ys = x[: p.n], y[: p.n]
        # ascending: the images kept (for detection and transfer) are those of the largest eps
        eps_list = sorted(p.eps) if isinstance(p.eps, list) else [p.eps]
        labels = ys.cpu()
        clean_right = clf.predict(xs).cpu() == labels
        metrics: dict[str, Any] = {"clean_accuracy": float(clean_right.double().mean())}
        robust, adv, adv_right = {}, xs, clean_right
        for i, eps in enumerate(eps_list):
            adv = PGD(eps=eps, steps=p.steps, norm=p.norm)(clf, xs, ys, seed=ctx.seed).adversarial
            adv_right = clf.predict(adv).cpu() == labels
            robust[str(eps)] = float(adv_right.double().mean())
            ctx.progress((i + 1) / len(eps_list))
        metrics["robust_accuracy"] = robust
        metrics.update(_detected(target, adv))
        # the attack's successes on this model (right when clean, wrong after): what its transfer is measured on
        fooled = clean_right & ~adv_right
        return CellOutput(metrics, {"adversarial": adv.detach().cpu(), "labels": labels, "fooled": fooled})

    @classmethod
    def report(cls, cells: list[dict[str, Any]]) -> list[str]:
        eps = list(dict.fromkeys(e for c in cells for e in c["metrics"]["robust_accuracy"]))
        rows = [
            [c["model"], c["defense"], c["method"], fmt(c["metrics"]["clean_accuracy"])]
            + [fmt(c["metrics"]["robust_accuracy"].get(e)) for e in eps]
            + [fmt(c["metrics"].get("detection_rate"))]
            for c in cells
        ]
        header = ["model", "defense", "method", "clean", *[f"eps {e}" for e in eps], "detected"]
        return [f"## {cls.title}", "", *table(header, rows), ""]

    @classmethod
    def revision(cls, params: Mapping[str, Any]) -> int:
        """2 since the cells keep which images the attack fooled (their transfer is measured on those alone);
        3 for an ``eps`` list out of ascending order (its kept images are now the largest eps's, not the last's).

        2 more (4 or 5) with ``norm="2"``: images that rounding left just outside the L2 ball are moved back in.
        """
        eps = params.get("eps")
        base = 3 if isinstance(eps, list) and eps != sorted(eps) else 2
        return base + 2 if params.get("norm", "inf") == "2" else base

    @classmethod
    def transfer_rate(cls, classifier: Any, tensors: dict[str, torch.Tensor], images: torch.Tensor) -> float | None:
        """The share of the source model's successful adversarial images that ``classifier`` misclassifies.

        An image counts as a success on its source when the source classified it right before the attack and
        wrong after; the others (already wrong, or still right) say nothing about transfer. None where the
        attack fooled none.
        """
        fooled = tensors["fooled"]
        if not bool(fooled.any()):
            return None
        adv, labels = tensors["adversarial"][fooled], tensors["labels"][fooled]
        return float((classifier.predict(adv.to(images.device)).cpu() != labels).double().mean())


@dataclass(frozen=True)
class AttacksParams(Params):
    """Parameters of ``AttacksMethod``."""

    eps: float = param(0.3, "L-inf perturbation budget", type="float", lo=0, lo_open=True)
    n: int = param(200, "held-out images attacked (at most the test split)", type="int", lo=1)
    pgd_steps: int = param(40, "PGD steps (gradient-based, BPDA through defenses)", type="int", lo=1, hi=10**6)
    square_queries: int = param(500, "Square Attack queries (score-based, gradient-free)", type="int", lo=1)


@register_method
class AttacksMethod(Method[AttacksParams]):
    """Robust accuracy under a gradient attack (PGD) and a gradient-free one (Square), and the worst case.

    An image counts as robust in the worst case only when every attack fails on it, so a defense that
    masks gradients (PGD fails) but not scores (Square succeeds) shows it here.
    """

    kind = "attacks"
    title = "Robust accuracy: PGD, Square Attack (gradient-free) and the worst case over both"
    rates = ("clean_accuracy", "robust_pgd", "robust_square", "robust_worst_case")
    Params = AttacksParams

    def run(self, target: Target, ctx: Context) -> CellOutput:
        from foolbench.search import PGD, SquareAttack

        p, clf = self.params, target.classifier
        x, y = ctx.test
        xs, ys = x[: p.n], y[: p.n]
        correct = clf.predict(xs).cpu() == ys.cpu()
        held = {}
        for i, (name, attack) in enumerate(
            [("pgd", PGD(eps=p.eps, steps=p.pgd_steps)), ("square", SquareAttack(p.eps, queries=p.square_queries))]
        ):
            adv = attack(clf, xs, ys, seed=ctx.seed).adversarial
            held[name] = correct & (clf.predict(adv).cpu() == ys.cpu())
            ctx.progress((i + 1) / 2)
        metrics = {
            "clean_accuracy": float(correct.double().mean()),
            "robust_pgd": float(held["pgd"].double().mean()),
            "robust_square": float(held["square"].double().mean()),
            "robust_worst_case": float((held["pgd"] & held["square"]).double().mean()),
            "eps": p.eps,
        }
        return CellOutput(metrics)

    @classmethod
    def report(cls, cells: list[dict[str, Any]]) -> list[str]:
        rows = [
            [c["model"], c["defense"], f"{c['metrics']['eps']:g}"]
            + [fmt(c["metrics"][k]) for k in ("clean_accuracy", "robust_pgd", "robust_square", "robust_worst_case")]
            for c in cells
        ]
        header = ["model", "defense", "eps", "clean", "PGD", "Square", "worst case"]
        return [f"## {cls.title}", "", *table(header, rows), ""]


@dataclass(frozen=True)
class UAPParams(Params):
    """Parameters of ``UAPMethod``."""

    eps: float = param(0.3, "perturbation budget", type="float", lo=0, lo_open=True)
    norm: str = param("inf", "the norm of the budget", type="str", choices=("inf", "2"))
    method: str = param("sgd", "how the perturbation is fitted", type="str", choices=("sgd", "deepfool"))
    fit: int = param(500, "training images it is fitted on (at most the train split)", type="int", lo=1)
    held_out: int = param(1000, "held-out images it is scored on", type="int", lo=1)
    max_passes: int = param(10, "passes over the fitting images", type="int", lo=1, hi=10**6)


@register_method
class UAPMethod(Method[UAPParams]):
    """A universal adversarial perturbation fitted on training images, scored on held-out ones."""

    kind = "uap"
    title = "Universal perturbations (held-out fooling rate)"
    rates = ("fooling_rate", "detection_rate")
    transfer = "UAP transfer (fooling rate)"
    Params = UAPParams

    def run(self, target: Target, ctx: Context) -> CellOutput:
        from foolbench.search import UniversalPerturbation, fooling_rate

        p, clf = self.params, target.classifier
        fit, held = ctx.train[0][: p.fit], ctx.test[0][: p.held_out]
        uap = UniversalPerturbation(
            eps=p.eps, norm=p.norm, method=p.method, max_passes=p.max_passes, delta=0.0, seed=ctx.seed
        )
        v = uap.fit(clf, fit).perturbation.detach()
        metrics: dict[str, Any] = {"fooling_rate": fooling_rate(clf, held, v)}
        lo, hi = clf.bounds
        metrics.update(_detected(target, (held + v.to(held.device)).clamp(lo, hi)))
        # the count of held-out images it was measured on: its transfer matrix's diagonal is then this rate
        return CellOutput(metrics, {"perturbation": v.cpu(), "held_out": torch.tensor(held.shape[0])})

    @classmethod
    def report(cls, cells: list[dict[str, Any]]) -> list[str]:
        rows = [
            [
                c["model"],
                c["defense"],
                c["method"],
                str(c["params"]["eps"]),
                fmt(c["metrics"]["fooling_rate"]),
                fmt(c["metrics"].get("detection_rate")),
            ]
            for c in cells
        ]
        header = ["model", "defense", "method", "eps", "fooling rate", "detected"]
        return [f"## {cls.title}", "", *table(header, rows), ""]

    @classmethod
    def revision(cls, params: Mapping[str, Any]) -> int:
        """2 with ``method="deepfool"``: DeepFool's 1e-4 nudge past the boundary is now on the distance (as in the
        reference code), not on the logit gap; the SGD fit is unchanged."""
        return 2 if params.get("method", "sgd") == "deepfool" else 1

    @classmethod
    def transfer_rate(cls, classifier: Any, tensors: dict[str, torch.Tensor], images: torch.Tensor) -> float | None:
        from foolbench.search import fooling_rate

        n = int(tensors["held_out"]) if "held_out" in tensors else images.shape[0]  # cells of 0.1.0: all
        return float(fooling_rate(classifier, images[:n], tensors["perturbation"].to(images.device)))


def _median_reached(values: list[int | None]) -> float | None:
    med = statistics.median([float("inf") if v is None else float(v) for v in values]) if values else float("inf")
    return None if med == float("inf") else med


def _curve(evaluations: torch.Tensor, confidence: torch.Tensor, points: int = 60) -> list[list[float]]:
    if evaluations.numel() == 0:
        return []
    idx = torch.linspace(0, evaluations.numel() - 1, min(points, evaluations.numel())).round().long()
    med = confidence.double().median(dim=1).values
    return [[float(evaluations[i]), float(med[i])] for i in idx]


QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def _curve_quantiles(evaluations: torch.Tensor, confidence: torch.Tensor, points: int = 60) -> list[list[float]]:
    """Rows ``[evaluations, q10, q25, median, q75, q90]`` of the best confidence over the classes."""
    if evaluations.numel() == 0:
        return []
    # spaced evenly in log(generation), the axis it is drawn on; always the first and the last record
    n = evaluations.numel()
    idx = torch.logspace(0, math.log10(n), min(points, n), dtype=torch.float64).round().long().clamp(1, n) - 1
    idx = torch.unique(torch.cat([idx, torch.tensor([0, n - 1])]))
    q = torch.quantile(confidence.double()[idx], torch.tensor(QUANTILES, dtype=torch.float64), dim=1)  # (Q, P)
    return [[float(evaluations[i]), *map(float, q[:, j])] for j, i in enumerate(idx)]
