"""Run a suite: every (model, defense, method) cell, resumable, with a versioned ``results.json``."""

from __future__ import annotations

import hashlib
import importlib
import json
import platform
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import foolbench
from foolbench import _io
from foolbench.bench._config import SuiteConfig, load_config
from foolbench.defenses import (
    AdversarialFineTuning,
    BitDepthReduction,
    Ensemble,
    FeatureSqueezingDetector,
    FoolingClassRetraining,
    GaussianSmoothing,
    MedianSmoothing,
    bit_depth,
    median,
)
from foolbench.encodings import CPPNEncoding, DirectEncoding, Encoding
from foolbench.errors import ConfigError, FoolbenchError, ModelOutputError
from foolbench.models import LeNet, TorchClassifier, imagenet_photos, load_model, mnist_digits, train_classifier
from foolbench.search import PGD, GradientAscent, MAPElites, UniversalPerturbation, fooling_rate

__all__ = ["SCHEMA", "run_suite"]

SCHEMA = "foolbench.bench/1"


@dataclass
class _Model:
    name: str
    classifier: TorchClassifier
    factory: Callable[[int], nn.Module] | None


@dataclass
class _Defended:
    name: str
    kind: str
    classifier: Any
    classes: list[int]
    detector: FeatureSqueezingDetector | None = None
    table: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _key(*parts: str) -> str:
    return "__".join(re.sub(r"[^A-Za-z0-9_.=,-]+", "-", p) for p in parts)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _import_factory(path: str, model: str) -> Callable[..., Any]:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"model {model!r}: factory must look like 'package.module:function', got {path!r}")
    try:
        module = importlib.import_module(module_name)
        fn = getattr(module, attr)
    except Exception as err:  # noqa: BLE001 - the user's module may raise anything on import
        raise ConfigError(f"model {model!r}: cannot import factory {path!r}: {type(err).__name__}: {err}") from None
    if not callable(fn):
        raise ConfigError(f"model {model!r}: factory {path!r} is not callable")
    return fn  # type: ignore[no-any-return]


class _Runner:
    def __init__(self, cfg: SuiteConfig, out: Path, device: str | None) -> None:
        self.cfg, self.out, self.device = cfg, out, device
        self.seed = cfg.seed
        self.datasets: dict[str, tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {}
        self.train, self.test = self.load_data(cfg.data["dataset"])
        self.models: dict[str, _Model] = {}
        self.cells: list[dict[str, Any]] = []
        self.defense_tables: dict[str, Any] = {}
        self.extras: dict[str, dict[str, torch.Tensor]] = {}

    def load_data(self, dataset: str) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        if dataset not in self.datasets:
            data = self.cfg.data
            if dataset == "mnist":
                train = int(data.get("train", 4000)) if data["dataset"] == "mnist" else 4000
                test = int(data.get("test", 1000)) if data["dataset"] == "mnist" else 1000
                self.datasets[dataset] = (
                    mnist_digits("train", limit=train, device=self.device),
                    mnist_digits("test", limit=test, device=self.device),
                )
            else:
                x, y = imagenet_photos(int(data.get("size", 224)), device=self.device)
                self.datasets[dataset] = ((x, y), (x, y))
        return self.datasets[dataset]

    def use(self, model: str) -> None:
        """Point :attr:`train` and :attr:`test` at ``model``'s dataset."""
        self.train, self.test = self.load_data(self.cfg_model(model).get("dataset", self.cfg.data["dataset"]))

    # -- models ---------------------------------------------------------------------
    def build_model(self, spec: Any) -> _Model:
        p = spec.params
        self.use(spec.name)
        if spec.kind == "zoo":
            kwargs: dict[str, Any] = {"device": self.device}
            if "image_size" in p:
                kwargs["image_size"] = p["image_size"]
            try:
                clf = load_model(p["zoo"], **kwargs)
            except FoolbenchError as err:
                raise ConfigError(f"model {spec.name!r}: {err}") from None
            factory: Callable[[int], nn.Module] | None = LeNet if p["zoo"] == "lenet-mnist" else None
            return _Model(spec.name, clf, factory)
        fn = _import_factory(p["factory"], spec.name)
        num_classes = int(p["num_classes"])
        rng = torch.random.get_rng_state()
        try:
            torch.manual_seed(self.seed)
            module = fn(num_classes)
        except Exception as err:  # noqa: BLE001 - the user's factory may raise anything
            raise ConfigError(
                f"model {spec.name!r}: factory {p['factory']!r} failed: {type(err).__name__}: {err}"
            ) from None
        finally:
            torch.random.set_rng_state(rng)
        if not isinstance(module, nn.Module):
            raise ConfigError(
                f"model {spec.name!r}: factory {p['factory']!r} must return an nn.Module, got {type(module).__name__}"
            )
        clf = TorchClassifier(
            module.eval(),
            input_shape=p["input_shape"],
            num_classes=num_classes,
            bounds=p.get("bounds", (0.0, 1.0)),
            mean=p.get("mean"),
            std=p.get("std"),
            device=self.device,
        )
        try:
            clf.log_probs(self.test[0][:2])
        except (ModelOutputError, RuntimeError, FoolbenchError) as err:
            raise ConfigError(f"model {spec.name!r}: factory {p['factory']!r} gives a bad model: {err}") from None
        epochs = p.get("train_epochs")
        if epochs:
            cache = self.out / "models" / f"{_key(spec.name)}.pt"
            digest = _digest(p)
            state = _io.load_torch(cache) if cache.is_file() else None
            if state is not None and state.get("digest") == digest:
                module.load_state_dict(state["weights"])
            else:
                train_classifier(
                    module, *self.train, epochs=int(epochs), batch_size=64, lr=3e-3, max_shift=0,
                    preprocess=clf.preprocess, seed=self.seed,
                )  # fmt: skip
                weights = {k: v.detach().cpu() for k, v in module.state_dict().items()}
                _io.save_torch(cache, {"digest": digest, "weights": weights})
            module.eval()
        return _Model(spec.name, clf, fn)

    # -- defenses -------------------------------------------------------------------
    def build_defense(self, model: _Model, spec: Any) -> _Defended:
        clf, p, k = model.classifier, spec.params, model.classifier.num_classes
        classes = list(range(k))
        if spec.kind == "none":
            return _Defended(spec.name, spec.kind, clf, classes)
        if spec.kind == "gaussian":
            return _Defended(spec.name, spec.kind, GaussianSmoothing(clf, p["sigma"]), classes)
        if spec.kind == "median":
            return _Defended(spec.name, spec.kind, MedianSmoothing(clf, p["size"]), classes)
        if spec.kind == "bit-depth":
            return _Defended(spec.name, spec.kind, BitDepthReduction(clf, p["bits"]), classes)
        if spec.kind == "ensemble":
            others = [self.models[m].classifier for m in p["members"] if m != model.name]
            return _Defended(spec.name, spec.kind, Ensemble([clf, *others], combine=p["combine"]), classes)
        if spec.kind == "feature-squeezing":
            det = FeatureSqueezingDetector(clf, [bit_depth(p["bits"], clf.bounds), median(p["median"])])
            det.calibrate(self.train[0], false_positive_rate=p["false_positive_rate"])
            info = {"threshold": det.threshold, "false_positive_rate_held_out": det.detection_rate(self.test[0])}
            return _Defended(spec.name, spec.kind, clf, classes, detector=det, info=info)
        ckpt = self.out / "defenses" / f"{_key(model.name, spec.name)}.pt"
        if spec.kind == "fooling-class":
            if model.factory is None:
                raise ConfigError(
                    f"defense {spec.name!r} retrains model {model.name!r} and needs its factory "
                    "(a factory = model, or the lenet-mnist zoo model)"
                )
            enc = self.encoding(p["encoding"], clf, None)
            fcr = FoolingClassRetraining(
                clf, model.factory, *self.train, *self.test, rounds=p["rounds"], encoding=enc,
                searches_per_round=p["searches_per_round"], max_evaluations=p["max_evaluations"],
                epochs=p["epochs"], fine_tune=p["fine_tune"], seed=self.seed,
            )  # fmt: skip
            table = fcr.run(checkpoint=ckpt, progress=False)
            return _Defended(spec.name, spec.kind, fcr.classifier, classes, table={"rows": table.rows})
        uap = UniversalPerturbation(eps=p["eps"], method="sgd", max_passes=p["max_passes"], delta=0.0, seed=self.seed)
        aft = AdversarialFineTuning(
            clf, *self.train, *self.test, uap=uap, fit_images=min(p["fit"], self.train[0].shape[0]),
            rounds=p["rounds"], epochs=p["epochs"], seed=self.seed,
        )  # fmt: skip
        table = aft.run(checkpoint=ckpt, progress=False)
        return _Defended(spec.name, spec.kind, aft.classifier, classes, table={"rows": table.rows})

    # -- methods --------------------------------------------------------------------
    def encoding(self, name: str, clf: Any, params: dict[str, Any] | None) -> Encoding:
        shape = clf.input_shape
        p = params or {}
        if name == "cppn":
            return CPPNEncoding(shape, eta=p.get("eta") or 15.0)
        if name == "direct":
            return DirectEncoding(shape, mutation_rate=p.get("mutation_rate", 0.02), eta=p.get("eta") or 1.0)
        raise ConfigError(f"encoding must be 'direct' or 'cppn', got {name!r}")

    def run_method(self, d: _Defended, spec: Any, key: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        clf, p = d.classifier, spec.params
        classes = p.get("classes") or d.classes
        metrics: dict[str, Any] = {}
        tensors: dict[str, torch.Tensor] = {}
        if spec.kind == "random":
            gen = torch.Generator().manual_seed(self.seed)
            for enc_name in ("direct", "cppn"):
                enc = self.encoding(enc_name, clf, None)
                images = enc.render(enc.sample(int(p["n"]), gen))
                lo, hi = clf.bounds
                conf = clf.probs(images * (hi - lo) + lo)[:, d.classes].max(1).values.double().cpu()
                metrics[f"{enc_name}_median_confidence"] = float(conf.median())
                metrics[f"{enc_name}_max_confidence"] = float(conf.max())
                metrics[f"{enc_name}_share_at_0.99"] = float((conf >= 0.99).double().mean())
            return metrics, tensors
        if spec.kind in ("map-elites", "gradient-ascent"):
            if spec.kind == "map-elites":
                search = MAPElites(
                    clf,
                    self.encoding(p["encoding"], clf, p),
                    classes=classes,
                    batch_size=p["batch_size"],
                    seed=self.seed,
                )
                res = search.run(
                    max_evaluations=p["max_evaluations"], max_seconds=p["max_seconds"],
                    target_confidence=p["target_confidence"], progress=False,
                    checkpoint=self.out / "checkpoints" / f"{key}.pt",
                )  # fmt: skip
            else:
                res = GradientAscent(
                    clf,
                    steps=p["steps"],
                    lr=p["lr"],
                    l2_decay=p["l2_decay"],
                    blur_every=p["blur_every"],
                    seed=self.seed,
                ).run(classes, target_confidence=0.9999)
            conf = res.confidence.double()
            reach = {t: res.evaluations_to(t) for t in (0.99, 0.9999)}
            metrics.update(
                classes=len(classes),
                fooled_0_99=float((conf >= 0.99).double().mean()),
                fooled_0_996=float((conf >= 0.996).double().mean()),
                fooled_0_9999=float((conf >= 0.9999).double().mean()),
                median_confidence=float(conf.median()),
                evaluations=res.evaluations,
                seconds=round(res.seconds, 2),
                median_evaluations_to_0_99=_median_reached(reach[0.99]),
                median_evaluations_to_0_9999=_median_reached(reach[0.9999]),
                curve=_curve(res.history.evaluations, res.history.confidence),
            )
            grid = self.out / "images" / f"{key}.png"
            res.save_png(grid)
            metrics["grid"] = str(grid.relative_to(self.out))
            tensors["images"] = res.images.cpu()
            if d.detector is not None:
                metrics["detection_rate"] = d.detector.detection_rate(res.images)
            return metrics, tensors
        x, y = self.test
        if spec.kind == "pgd":
            n = min(int(p["n"]), x.shape[0])
            xs, ys = x[:n], y[:n]
            eps_list = p["eps"] if isinstance(p["eps"], list) else [p["eps"]]
            metrics["clean_accuracy"] = float((clf.predict(xs).cpu() == ys.cpu()).double().mean())
            robust = {}
            adv = xs
            for eps in eps_list:
                adv = PGD(eps=eps, steps=p["steps"], norm=p["norm"])(clf, xs, ys, seed=self.seed).adversarial
                robust[str(eps)] = float((clf.predict(adv).cpu() == ys.cpu()).double().mean())
            metrics["robust_accuracy"] = robust
            tensors["adversarial"] = adv.detach().cpu()
            tensors["labels"] = ys.cpu()
            if d.detector is not None:
                metrics["detection_rate"] = d.detector.detection_rate(adv)
            return metrics, tensors
        # uap
        fit = self.train[0][: int(p["fit"])]
        held = x[: int(p["held_out"])]
        uap = UniversalPerturbation(
            eps=p["eps"], norm=p["norm"], method=p["method"], max_passes=p["max_passes"], delta=0.0, seed=self.seed
        )
        v = uap.fit(clf, fit).perturbation.detach()
        metrics["fooling_rate"] = fooling_rate(clf, held, v)
        tensors["perturbation"] = v.cpu()
        if d.detector is not None:
            lo, hi = clf.bounds
            metrics["detection_rate"] = d.detector.detection_rate((held + v.to(held.device)).clamp(lo, hi))
        return metrics, tensors

    # -- the loop -------------------------------------------------------------------
    def cell(self, model: _Model, d: _Defended, dspec: Any, spec: Any, bar: Any) -> None:
        key = _key(model.name, d.name, spec.name)
        config = {
            "model": self.cfg_model(model.name),
            "defense": [dspec.kind, dspec.params],
            "method": [spec.kind, spec.params],
            "seed": self.seed,
            "data": self.cfg.data,
        }
        digest = _digest(config)
        path = self.out / "cells" / f"{key}.json"
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
            except json.JSONDecodeError:
                stored = {}
            if stored.get("digest") == digest:
                self.cells.append(stored)
                tensor_path = path.with_suffix(".pt")
                if tensor_path.is_file():
                    self.extras[key] = _io.load_torch(tensor_path)
                bar.update(1)
                return
        t0 = time.perf_counter()
        metrics, tensors = self.run_method(d, spec, key)
        record = {
            "key": key,
            "model": model.name,
            "defense": d.name,
            "defense_kind": d.kind,
            "method": spec.name,
            "method_kind": spec.kind,
            "params": spec.params,
            "metrics": metrics,
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "digest": digest,
        }
        if tensors:
            _io.save_torch(path.with_suffix(".pt"), tensors)
            self.extras[key] = tensors
        _io.write_json(path, record)
        self.cells.append(record)
        bar.update(1)

    def cfg_model(self, name: str) -> dict[str, Any]:
        return next(m.params for m in self.cfg.models if m.name == name)


def _median_reached(values: list[int | None]) -> float | None:
    med = statistics.median([float("inf") if v is None else float(v) for v in values]) if values else float("inf")
    return None if med == float("inf") else med


def _curve(evaluations: torch.Tensor, confidence: torch.Tensor, points: int = 60) -> list[list[float]]:
    if evaluations.numel() == 0:
        return []
    idx = torch.linspace(0, evaluations.numel() - 1, min(points, evaluations.numel())).round().long()
    med = confidence.double().median(dim=1).values
    return [[float(evaluations[i]), float(med[i])] for i in idx]


def _applies(spec: Any, model: str) -> bool:
    return spec.only is None or model in spec.only


def run_suite(
    config: str | Path | SuiteConfig,
    *,
    out: str | Path,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every (model, defense, method) cell of a suite and write its reports to ``out``.

    Cells already finished in ``out`` (same configuration) are loaded, not recomputed, so an
    interrupted suite resumes where it stopped. Writes ``results.json`` (schema
    :data:`SCHEMA`), ``report.md``, PNG grids under ``images/`` and, with matplotlib, plots.

    Args:
        config: a built-in suite name (``"quick"``, ``"paper"``), a TOML path or a :class:`SuiteConfig`.
        out: output folder.
        device: ``"cpu"`` or ``"cuda"`` (default CPU).
        progress: show a progress bar over the cells.

    Returns:
        The content of ``results.json``.

    Raises:
        ConfigError: invalid suite, unknown names, a model factory that fails or returns a bad model.

    Examples:
        >>> import foolbench as fb, tempfile
        >>> cfg = fb.bench.parse_config({
        ...     "models": [{"zoo": "lenet-mnist"}],
        ...     "data": {"dataset": "mnist", "train": 200, "test": 100},
        ...     "methods": [{"kind": "random", "n": 32}]})
        >>> res = fb.bench.run_suite(cfg, out=tempfile.mkdtemp(), progress=False)
        >>> res["schema"], len(res["cells"])
        ('foolbench.bench/1', 1)
    """
    from tqdm.auto import tqdm

    cfg = config if isinstance(config, SuiteConfig) else load_config(config)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    runner = _Runner(cfg, out_dir, device)
    t0 = time.perf_counter()
    for spec in cfg.models:
        runner.models[spec.name] = runner.build_model(spec)
    runner.use(cfg.models[0].name)
    total = sum(
        1 for m in cfg.models for d in cfg.defenses for s in cfg.methods if _applies(d, m.name) and _applies(s, m.name)
    )
    clean: list[dict[str, Any]] = []
    with tqdm(total=total, disable=not progress, desc=f"suite {cfg.name}", unit="cell", leave=False) as bar:
        for mspec in cfg.models:
            model = runner.models[mspec.name]
            runner.use(model.name)
            for dspec in cfg.defenses:
                if not _applies(dspec, model.name):
                    continue
                bar.set_postfix_str(f"{model.name} / {dspec.name}", refresh=True)
                d = runner.build_defense(model, dspec)
                x, y = runner.test
                acc = float((d.classifier.predict(x).cpu() == y.cpu()).double().mean())
                clean.append({"model": model.name, "defense": d.name, "clean_accuracy": acc, **d.info})
                if d.table is not None:
                    runner.defense_tables[_key(model.name, d.name)] = {
                        "model": model.name,
                        "defense": d.name,
                        **d.table,
                    }
                for sspec in cfg.methods:
                    if _applies(sspec, model.name):
                        runner.cell(model, d, dspec, sspec, bar)
    from foolbench.bench._report import claims, transfer, write_reports

    results: dict[str, Any] = {
        "schema": SCHEMA,
        "suite": cfg.name,
        "foolbench": foolbench.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device or "cpu"),
        "seed": cfg.seed,
        "data": cfg.data,
        "config": cfg.raw,
        "seconds": round(time.perf_counter() - t0, 1),
        "clean": clean,
        "cells": runner.cells,
        "defense_tables": list(runner.defense_tables.values()),
        "transfer": transfer(runner),
    }
    results["claims"] = claims(results)
    write_reports(results, out_dir)
    return results
