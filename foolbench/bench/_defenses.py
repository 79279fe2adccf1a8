"""The built-in defense kinds of a suite (every call into :mod:`foolbench.defenses` made by the bench)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from foolbench.bench._methods import encoding
from foolbench.bench._params import Params, param
from foolbench.bench._registry import Context, Defense, Model, Target, register_defense
from foolbench.errors import ConfigError

__all__ = [
    "BitDepthDefense",
    "EnsembleDefense",
    "FeatureSqueezingDefense",
    "FoolingClassDefense",
    "GaussianDefense",
    "MedianDefense",
    "NoDefense",
    "UAPFineTuningDefense",
]


def _classes(model: Model) -> list[int]:
    return list(range(model.classifier.num_classes))


def _odd(key: str, size: int) -> None:
    """Refuse an even median window, as :func:`foolbench.defenses.median` does (at parse time, naming ``key``)."""
    if size % 2 == 0:
        raise ConfigError(f"{key} must be odd (a median window needs a centre pixel), got {size}")


@dataclass(frozen=True)
class NoParams(Params):
    """Parameters of ``NoDefense``."""


@register_defense
class NoDefense(Defense[NoParams]):
    """The model as it is."""

    kind = "none"
    Params = NoParams

    def build(self, model: Model, ctx: Context) -> Target:
        return Target(model.classifier, _classes(model))


@dataclass(frozen=True)
class GaussianParams(Params):
    """Parameters of ``GaussianDefense``."""

    sigma: float = param(1.0, "blur standard deviation in pixels", type="float", lo=0, lo_open=True)


@register_defense
class GaussianDefense(Defense[GaussianParams]):
    """Gaussian smoothing of the input before the model."""

    kind = "gaussian"
    Params = GaussianParams

    def build(self, model: Model, ctx: Context) -> Target:
        from foolbench.defenses import GaussianSmoothing

        return Target(GaussianSmoothing(model.classifier, self.params.sigma), _classes(model))

    @classmethod
    def revision(cls, params: Mapping[str, Any], bounds: tuple[float, float]) -> int:
        """2: the blurred images are clamped to the bounds (a float32 blur can end 2.4e-7 above the top)."""
        return 2


@dataclass(frozen=True)
class MedianParams(Params):
    """Parameters of ``MedianDefense``."""

    size: int = param(3, "median window (pixels, odd)", type="int", lo=3, hi=99)

    def __post_init__(self) -> None:
        _odd("size", self.size)


@register_defense
class MedianDefense(Defense[MedianParams]):
    """Median smoothing of the input (BPDA: straight-through gradients)."""

    kind = "median"
    Params = MedianParams

    def build(self, model: Model, ctx: Context) -> Target:
        from foolbench.defenses import MedianSmoothing

        return Target(MedianSmoothing(model.classifier, self.params.size), _classes(model))

    @classmethod
    def revision(cls, params: Mapping[str, Any], bounds: tuple[float, float]) -> int:
        """2 on a model whose bounds are not [0, 1]: the squeezed images are clamped to the bounds, which an
        image mapped into them (``lower + (upper - lower) * x`` in float32) can pass by a rounding error."""
        return 1 if tuple(bounds) == (0.0, 1.0) else 2


@dataclass(frozen=True)
class BitDepthParams(Params):
    """Parameters of ``BitDepthDefense``."""

    bits: int = param(1, "bits kept per channel", type="int", lo=1, hi=8)


@register_defense
class BitDepthDefense(Defense[BitDepthParams]):
    """Bit-depth reduction of the input (BPDA: straight-through gradients)."""

    kind = "bit-depth"
    Params = BitDepthParams

    def build(self, model: Model, ctx: Context) -> Target:
        from foolbench.defenses import BitDepthReduction

        return Target(BitDepthReduction(model.classifier, self.params.bits), _classes(model))

    @classmethod
    def revision(cls, params: Mapping[str, Any], bounds: tuple[float, float]) -> int:
        """2 on a model whose bounds are not [0, 1]: the squeezed images are clamped to the bounds, which an
        image mapped into them (``lower + (upper - lower) * x`` in float32) can pass by a rounding error."""
        return 1 if tuple(bounds) == (0.0, 1.0) else 2


@dataclass(frozen=True)
class EnsembleParams(Params):
    """Parameters of ``EnsembleDefense``."""

    members: list[str] | None = param(  # noqa: RUF009
        None, "the suite's models combined with each model (required)", type="strs"
    )
    combine: str = param("mean_probs", "how outputs combine", type="str", choices=("mean_probs", "mean_logits", "vote"))


@register_defense
class EnsembleDefense(Defense[EnsembleParams]):
    """The model combined with other models of the suite."""

    kind = "ensemble"
    Params = EnsembleParams

    def validate(self, model_names: list[str], where: str) -> None:
        if not self.params.members:
            raise ConfigError(
                f"{where}: an ensemble needs members = [...], the suite's models it combines with each model"
            )
        for m in self.params.members:  # parse time has checked it is given
            if m not in model_names:
                raise ConfigError(f"{where}: ensemble member {m!r} is not a model of the suite: {sorted(model_names)}")

    def depends_on(self, model: str) -> list[str]:
        return [m for m in dict.fromkeys(self.params.members or ()) if m != model]

    def build(self, model: Model, ctx: Context) -> Target:
        from foolbench.defenses import Ensemble

        others = [ctx.models[m].classifier for m in self.depends_on(model.name)]
        if not others:
            raise ConfigError(
                f"ensemble of {model.name!r}: members = {self.params.members} names no other model "
                "(an ensemble of one model); add another model, or restrict the defense with models = [...]"
            )
        return Target(Ensemble([model.classifier, *others], combine=self.params.combine), _classes(model))


@dataclass(frozen=True)
class FeatureSqueezingParams(Params):
    """Parameters of ``FeatureSqueezingDefense``."""

    bits: int = param(1, "bit depth of the first squeezer", type="int", lo=1, hi=8)
    median: int = param(3, "window of the median squeezer (pixels, odd)", type="int", lo=3, hi=99)
    false_positive_rate: float = param(
        0.05, "share of clean training images flagged (below 1)", type="float", lo=0, hi=1, lo_open=True
    )

    def __post_init__(self) -> None:
        _odd("median", self.median)
        if self.false_positive_rate >= 1.0:  # as FeatureSqueezingDetector.calibrate: (0, 1)
            raise ConfigError(f"false_positive_rate must be in (0, 1), got {self.false_positive_rate:g}")


@register_defense
class FeatureSqueezingDefense(Defense[FeatureSqueezingParams]):
    """A feature-squeezing detector (bit depth + median), calibrated on training images."""

    kind = "feature-squeezing"
    Params = FeatureSqueezingParams

    def build(self, model: Model, ctx: Context) -> Target:
        from foolbench.defenses import FeatureSqueezingDetector, bit_depth, median

        p, clf = self.params, model.classifier
        det = FeatureSqueezingDetector(clf, [bit_depth(p.bits, clf.bounds), median(p.median)])
        det.calibrate(ctx.train[0], false_positive_rate=p.false_positive_rate)
        info = {"threshold": det.threshold, "false_positive_rate_held_out": det.detection_rate(ctx.test[0])}
        return Target(clf, _classes(model), detector=det, info=info)


@dataclass(frozen=True)
class FoolingClassParams(Params):
    """Parameters of ``FoolingClassDefense``."""

    rounds: int = param(1, "retraining rounds", type="int", lo=1, hi=1000)
    searches_per_round: int = param(3, "fresh searches per round", type="int", lo=1, hi=1000)
    max_evaluations: int = param(30_000, "evaluation budget of each search", type="int", lo=1)
    encoding: str = param("direct", "genome encoding of the searches", type="str", choices=("direct", "cppn"))
    epochs: int = param(6, "training epochs per round", type="int", lo=1, hi=10_000)
    fine_tune: bool = param(False, "fine-tune the previous model instead of training afresh", type="bool")


@register_defense
class FoolingClassDefense(Defense[FoolingClassParams]):
    """Retraining with an extra "fooling" class over rounds of fresh searches (Nguyen et al. 2015)."""

    kind = "fooling-class"
    Params = FoolingClassParams

    def build(self, model: Model, ctx: Context) -> Target:
        from foolbench.defenses import FoolingClassRetraining

        p, clf = self.params, model.classifier
        if model.factory is None:
            raise ConfigError(
                f"defense fooling-class retrains model {model.name!r} and needs its factory "
                "(a factory = model, or the lenet-mnist zoo model)"
            )
        fcr = FoolingClassRetraining(
            clf, model.factory, *ctx.train, *ctx.test, rounds=p.rounds, encoding=encoding(p.encoding, clf.input_shape),
            searches_per_round=p.searches_per_round, max_evaluations=p.max_evaluations,
            epochs=p.epochs, fine_tune=p.fine_tune, seed=ctx.seed,
        )  # fmt: skip
        table = fcr.run(checkpoint=ctx.scratch / "fooling-class.pt", progress=False)
        return Target(fcr.classifier, _classes(model), table={"rows": table.rows})


@dataclass(frozen=True)
class UAPFineTuningParams(Params):
    """Parameters of ``UAPFineTuningDefense``."""

    rounds: int = param(2, "fine-tuning rounds", type="int", lo=1, hi=1000)
    eps: float = param(0.3, "budget of the perturbations", type="float", lo=0, lo_open=True)
    epochs: int = param(2, "training epochs per round", type="int", lo=1, hi=10_000)
    fit: int = param(500, "training images each perturbation is fitted on", type="int", lo=1)
    max_passes: int = param(10, "passes of each perturbation fit", type="int", lo=1, hi=10**6)


@register_defense
class UAPFineTuningDefense(Defense[UAPFineTuningParams]):
    """Fine-tuning on images perturbed by fresh universal perturbations (Moosavi-Dezfooli et al. 2017)."""

    kind = "uap-fine-tuning"
    Params = UAPFineTuningParams

    def build(self, model: Model, ctx: Context) -> Target:
        from foolbench.defenses import AdversarialFineTuning
        from foolbench.search import UniversalPerturbation

        p = self.params
        uap = UniversalPerturbation(eps=p.eps, method="sgd", max_passes=p.max_passes, delta=0.0, seed=ctx.seed)
        aft = AdversarialFineTuning(
            model.classifier, *ctx.train, *ctx.test, uap=uap, fit_images=min(p.fit, ctx.train[0].shape[0]),
            rounds=p.rounds, epochs=p.epochs, seed=ctx.seed,
        )  # fmt: skip
        table = aft.run(checkpoint=ctx.scratch / "uap-fine-tuning.pt", progress=False)
        return Target(aft.classifier, _classes(model), table={"rows": table.rows})
