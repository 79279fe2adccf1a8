"""The published-claims table (as data) and the report files of a suite: pure functions of the results."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from foolbench import _io
from foolbench.bench._registry import METHODS, Method, fmt, table

__all__ = ["CLAIMS", "IMAGENET_GROUPS", "Claim", "claims", "imagenet_group", "markdown", "write_reports"]


def _cells(results: dict[str, Any], **match: str) -> list[dict[str, Any]]:
    return [c for c in results["cells"] if all(c.get(k) == v for k, v in match.items())]


def _datasets(results: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m.get("dataset") or results["data"]["dataset"] for m in results["settings"]["models"]}


# what fits on the train split and is scored on the test split: in-sample where the two are one
FITTED_METHODS, FITTED_DEFENSES = ("uap",), ("feature-squeezing", "fooling-class", "uap-fine-tuning")
SINGLE_SPLIT_DATASETS = ("imagenet-photos",)


def in_sample(results: dict[str, Any]) -> list[str]:
    """What the results fit and score on one set of images (a dataset with one split), as "model: what".

    ``imagenet-photos`` has one split (its shipped photos are both the train and the test images), so on
    it a UAP's held-out fooling rate, a fitted defense's held-out figures and a model trained by the suite
    are measured on the images they were fitted on.
    """
    datasets = _datasets(results)
    out = [
        f"{m['name']}: its training"
        for m in results["settings"]["models"]
        if datasets[m["name"]] in SINGLE_SPLIT_DATASETS and m.get("train_epochs")
    ]
    for c in results["cells"]:
        if datasets.get(c["model"]) not in SINGLE_SPLIT_DATASETS:
            continue
        if c["defense_kind"] in FITTED_DEFENSES:
            out.append(f"{c['model']}: defense {c['defense']}")
        if c["method_kind"] in FITTED_METHODS:
            out.append(f"{c['model']}: method {c['method']}")
    return list(dict.fromkeys(out))


def _evolved(
    results: dict[str, Any],
    encoding: str,
    defense_kind: str = "none",
    dataset: str = "mnist",
    method_kind: str = "map-elites",
    budget: int | None = None,
    model: str | None = None,
    defense: str | None = None,
) -> str | None:
    datasets = _datasets(results)
    match = {"method_kind": method_kind, "defense_kind": defense_kind}
    match.update({k: v for k, v in (("model", model), ("defense", defense)) if v is not None})
    found = [
        c
        for c in _cells(results, **match)
        if c["params"]["encoding"] == encoding and datasets.get(c["model"], "mnist") == dataset
        and (budget is None or c["params"]["max_evaluations"] == budget)
    ]  # fmt: skip
    parts = []
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for c in found:  # one entry per model, defense and method (or group of runs): never a mean across them
        runs.setdefault((c["model"], c["defense"], c.get("group") or c["key"]), []).append(c)
    for (name, defended, _), group in runs.items():
        n = group[0]["metrics"]["classes"]

        def mean(name: str, group: list[dict[str, Any]] = group) -> float:
            return float(statistics.mean(c["metrics"][name] for c in group))

        who = name if defense_kind == "none" else f"{name} + {defended}"
        label = who if len(group) == 1 else f"{who} ({group[0]['group']}, mean of {len(group)} runs)"
        extra = f", {_count(mean('fooled_0_996'), n)}/{n} >= 99.6%" if dataset != "mnist" else ""
        parts.append(
            f"{label}: {_count(mean('fooled_0_9999'), n)}/{n} classes >= 99.99%, "
            f"{_count(mean('fooled_0_99'), n)}/{n} >= 99%{extra} "
            f"(median {_pct_down(mean('median_confidence'))}, {mean('evaluations'):,.0f} evals)"
        )
    return "; ".join(parts) or None


def _pct_down(x: float | None) -> str:
    """A confidence as a percentage rounded down to two decimals, as the claims compare it with thresholds.

    A median of 99.987% must not read as the 99.99% it is compared with (``fmt`` rounds to nearest).

    Examples:
        >>> _pct_down(0.999872), _pct_down(0.999996), _pct_down(0.5), _pct_down(None)
        ('99.98%', '99.99%', '50.00%', '-')
    """
    if x is None:
        return "-"
    return f"{math.floor(round(x * 1e4, 6)) / 100:.2f}%"


def _count(share: float, n: int) -> str:
    """``share`` of ``n`` classes as a count: whole where it is one, else to one decimal (a mean over runs).

    A mean of 9.8 classes must not read as all 10.

    Examples:
        >>> _count(1.0, 10), _count(0.98, 10), _count(0.995, 10)
        ('10', '9.8', '9.9')
    """
    value = share * n
    if abs(value - round(value)) < 1e-9:
        return f"{round(value)}"
    return f"{math.floor(round(value * 10, 6)) / 10:.1f}"  # rounded down: 9.96 reads 9.9, never 10.0


def _joined(parts: list[str]) -> str | None:
    return "; ".join(parts) or None


def _zoo_name(results: dict[str, Any], model: str) -> str | None:
    return next((m.get("zoo") for m in results["settings"]["models"] if m["name"] == model), None)


def _random_one(results: dict[str, Any], c: dict[str, Any]) -> str:
    m = c["metrics"]
    text = (
        f"{c['model']}: median top confidence {fmt(m['direct_median_confidence'])} (noise), "
        f"{fmt(m['cppn_median_confidence'])} (CPPN)"
    )
    if _zoo_name(results, c["model"]) == "lenet-mnist-noise-trained":
        return text + " (a model trained for it: outlier exposure on uniform noise, so low by construction)"
    if m["direct_median_confidence"] >= 0.5 and "direct_top_class_share" in m:
        text += (
            f". The premise does not hold for this model: {fmt(m['direct_top_class_share'])} of the noise is "
            f"called {m['direct_top_class_name']!r}; the noise has mean pixel {m['direct_mean_pixel']:.2f}, "
            f"the real images {m['data_mean_pixel']:.2f}, far outside what it was trained on"
        )
    return text


def _random(results: dict[str, Any]) -> str | None:
    return _joined([_random_one(results, c) for c in _cells(results, method_kind="random", defense_kind="none")])


def _random_search(results: dict[str, Any]) -> str | None:
    """Random sampling at a budget next to evolution, per encoding and dataset where both ran."""
    parts: list[str] = []
    datasets = _datasets(results)
    seen: set[tuple[str, str, int]] = set()
    for c in _cells(results, method_kind="random-search", defense_kind="none"):
        enc, dataset, budget = (
            c["params"]["encoding"],
            datasets.get(c["model"], "mnist"),
            c["params"]["max_evaluations"],
        )
        if (enc, dataset, budget) in seen:  # one row per encoding, dataset and budget, every model in it
            continue
        seen.add((enc, dataset, budget))
        key = f"{enc} on {dataset}, {budget:,} evaluations"
        sampled = _evolved(results, enc, dataset=dataset, method_kind="random-search", budget=budget)
        evolved = _evolved(results, enc, dataset=dataset, budget=budget) or "no evolution at this budget in this suite"
        parts.append(f"{key}: random sampling {sampled}; evolution {evolved}")
    return _joined(parts)


def _ascent(results: dict[str, Any]) -> str | None:
    return _joined([
        f"{c['model']}: {fmt(c['metrics']['fooled_0_9999'])} of classes >= 99.99% "
        f"({c['metrics']['evaluations']} images through the model)"
        for c in _cells(results, method_kind="gradient-ascent", defense_kind="none")
    ])  # fmt: skip


def _retraining(results: dict[str, Any]) -> str | None:
    fcr = [t for t in results["defense_tables"] if t["rows"] and "fresh_median_confidence" in t["rows"][0]]
    return _joined([
        f"{t['model']}: fresh search median {_pct_down(t['rows'][-1]['fresh_median_confidence'])} after "
        f"{t['rows'][-1]['round']} round(s), {fmt(t['rows'][-1]['fresh_fooled'])} of classes >= 99.99%; "
        "evolution after retraining (this suite's budget): "
        f"{_evolved(results, 'direct', 'fooling-class', model=t['model'], defense=t['defense']) or '-'}"
        for t in fcr
    ])  # fmt: skip


def _off_diagonal(results: dict[str, Any], kind: str) -> float | None:
    """Mean transfer rate (off the diagonal) over the matrices of the methods of ``kind``."""
    rates = [
        tr["matrix"][i][j]
        for name, tr in results["transfer"].items()
        if tr.get("kind", name) == kind  # results of 0.1.0 keyed the matrices by kind
        for i in range(len(tr["models"]))
        for j in range(len(tr["models"]))
        if i != j and tr["matrix"][i][j] is not None
    ]
    return float(statistics.mean(rates)) if rates else None


def _uap(results: dict[str, Any]) -> str | None:
    parts = [f"{c['model']}: {fmt(c['metrics']['fooling_rate'])} held-out" for c in
             _cells(results, method_kind="uap", defense_kind="none")]  # fmt: skip
    off = _off_diagonal(results, "uap")
    return _joined(parts + ([f"mean transfer {fmt(off)}"] if off is not None else []))


def _fine_tuning(results: dict[str, Any]) -> str | None:
    aft = [t for t in results["defense_tables"] if t["rows"] and "fooling_rate" in t["rows"][0]]
    return _joined([
        f"{t['model']}: fresh UAP {fmt(t['rows'][0]['fooling_rate'])} -> {fmt(t['rows'][-1]['fooling_rate'])} "
        f"after {t['rows'][-1]['round']} round(s)"
        for t in aft
    ])  # fmt: skip


def _diversity(results: dict[str, Any]) -> str | None:
    parts = []
    for d in results.get("diversity", []):
        if d.get("defense_kind", d["defense"]) != "none":  # the kind (results before 0.2: the name)
            continue
        real = d["median_real_pixel"]
        ratio = f", real images of a class {real:.3f}" if real is not None else ""
        parts.append(
            f"{d['model']} / {d['method']}: {d['runs']} runs, mean elite confidence {fmt(d['mean_confidence'])}; "
            f"median pixel distance between runs' elites {d['median_pixel']:.3f}{ratio}"
        )
    return _joined(parts)


def _pgd_transfer(results: dict[str, Any]) -> str | None:
    off = _off_diagonal(results, "pgd")
    return (
        None
        if off is None
        else f"PGD examples that fooled their model, misclassified by the other models: mean {fmt(off)}"
    )


@dataclass(frozen=True)
class Claim:
    """A published claim and how a suite's results measure it (None: not measured by these results)."""

    claim: str
    source: str
    published: str
    measure: Callable[[dict[str, Any]], str | None]


PAPER = "Nguyen, Yosinski & Clune, CVPR 2015"
CLAIMS: tuple[Claim, ...] = (
    Claim("Direct-encoded evolved images fool MNIST nets on every digit", PAPER, ">= 99.99%",
          lambda r: _evolved(r, "direct")),
    Claim("CPPN-encoded evolved images fool MNIST nets on every digit", PAPER, ">= 99.99%",
          lambda r: _evolved(r, "cppn")),
    Claim("CPPN images fool an ImageNet net for many classes", PAPER + ", Fig. 1", ">= 99.6% (AlexNet)",
          lambda r: _evolved(r, "cppn", dataset="imagenet-photos")),
    Claim("Direct-encoded evolved images fool an ImageNet net less often than CPPN images", PAPER + ", Sec. 3.2",
          "less successful (qualitative)", lambda r: _evolved(r, "direct", dataset="imagenet-photos")),
    Claim("Random, unevolved images get low confidence", PAPER, "low", _random),
    Claim("Evolution, not sampling, finds them: random images at the same budget fool few classes",
          PAPER + " (the equal-budget baseline is ours)", "low (random images)", _random_search),
    Claim("Evolved images selected across 5 runs are diverse yet confident", PAPER + ", Fig. 8",
          "mean 99.12% (5 runs)", _diversity),
    Claim("Gradient ascent from noise produces fooling images", PAPER, ">= 99.99%", _ascent),
    Claim("Retraining with an extra fooling class: MNIST nets are still fooled", PAPER, "MNIST still 99.99%",
          _retraining),
    Claim("A universal perturbation fools most inputs and transfers across architectures",
          "Moosavi-Dezfooli et al., CVPR 2017", "~80% fooling; > 53% transfer", _uap),
    Claim("Fine-tuning on perturbed images leaves the UAP fooling rate high", "same", "~80%", _fine_tuning),
    Claim("An adversarial image made for one network often fails on another", "common observation", "-",
          _pgd_transfer),
)  # fmt: skip


def claims(results: dict[str, Any]) -> list[dict[str, str]]:
    """Each claim of :data:`CLAIMS` with what these results measured (or "not in this suite")."""
    rows = []
    for c in CLAIMS:
        measured = c.measure(results)
        rows.append({"claim": c.claim, "source": c.source, "published": c.published,
                     "measured": measured or "not in this suite"})  # fmt: skip
    return rows


def _method_sections(cells: list[dict[str, Any]]) -> list[str]:
    """One section per method kind present, written by its registered class (in order of appearance)."""
    lines: list[str] = []
    for kind in dict.fromkeys(c["method_kind"] for c in cells):
        cls = METHODS.get(kind)
        of_kind = [c for c in cells if c["method_kind"] == kind]
        if cls is None:  # a kind no longer registered: the generic table
            lines += Method.report.__func__(type("Unregistered", (Method,), {"kind": kind}), of_kind)  # type: ignore[attr-defined]
        else:
            lines += cls.report(of_kind)
    return lines


def markdown(results: dict[str, Any], plots: list[str] = ()) -> str:  # type: ignore[assignment]
    """``report.md``: a pure function of ``results`` (the content of ``results.json``)."""
    lines = [
        f"# foolbench scorecard: suite `{results['suite']}`",
        "",
        (
            f"foolbench {results['foolbench']}, torch {results['torch']}, Python {results['python']}, "
            f"device {results['device']}, {results['settings']['torch_threads']} torch thread(s), "
            f"seed {results['seed']}, {results['seconds']:.0f} s."
        ),
        "",
    ]
    if fitted := in_sample(results):
        lines += [
            (
                "**In-sample figures:** these are fitted and scored on the same images, since their dataset has "
                f"one split: {'; '.join(fitted)}. Their held-out figures are not held out."
            ),
            "",
        ]
    if results["failed"]:
        lines += ["## Failed cells (each tried twice)", ""]
        lines += table(["model", "defense", "method", "error"],
                       [[f["model"], f["defense"], f["method"], f["error"]] for f in results["failed"]])  # fmt: skip
        lines.append("")
    lines += ["## Clean accuracy (held-out)", ""]
    lines += table(
        ["model", "defense", "clean accuracy", "detector false positives"],
        [
            [c["model"], c["defense"], fmt(c["clean_accuracy"]), fmt(c.get("false_positive_rate_held_out"))]
            for c in results["clean"]
        ],
    )
    lines.append("")
    lines += _method_sections(results["cells"])
    lines += diversity_section(results.get("diversity", []))
    lines += super_categories_section(results)
    for tr in results["transfer"].values():
        lines += [f"## {tr['title']}: rows made on, columns evaluated on", ""]
        lines += table(
            ["from \\ to", *tr["models"]],
            [[m] + [fmt(v) for v in row] for m, row in zip(tr["models"], tr["matrix"], strict=True)],
        )
        lines.append("")
    for t in results["defense_tables"]:
        rows = t["rows"]
        if rows:
            lines += [f"## Defense rounds: {t['model']} / {t['defense']}", ""]
            lines += table(
                list(rows[0]),
                [
                    ["-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()]
                    for r in rows
                ],
            )
            lines.append("")
    measured = [r for r in results["claims"] if r["measured"] != "not in this suite"]
    if measured:
        lines += ["## Published claims (those this suite measures)", ""]
        lines += table(
            ["claim", "source", "published", "measured"],
            [[r["claim"], r["source"], r["published"], r["measured"]] for r in measured],
        )
        lines.append("")
    if plots:
        lines += ["## Plots", "", *[f"![{Path(p).stem}]({p})" for p in plots], ""]
    grids = [c for c in results["cells"] if isinstance(c["metrics"].get("grid"), str)]
    if grids:
        lines += ["## Fooling images per cell", ""]
        lines += [
            f"### {c['model']} / {c['defense']} / {c['method']}\n\n![{c['key']}]({c['metrics']['grid']})\n"
            for c in grids
        ]
    return "\n".join(lines) + "\n"


# A coarse, documented grouping of the 1,000 ImageNet-1k class indices (the standard class order), for
# "which kinds of class fool most". Boundaries follow the WordNet ordering of the classes: 151-268 are
# the dog breeds, 0-397 the animals, 924-969 food and drink, 970-980 landscapes, 981-983 people, 984-998
# plants and fungi; everything else (398-923 and 999) is man-made objects. Coarse: e.g. 923 "plate" is
# counted as an object and 968 "cup" as food and drink.
IMAGENET_GROUPS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("dogs (151-268)", ((151, 268),)),
    ("other animals (0-150, 269-397)", ((0, 150), (269, 397))),
    ("man-made objects (398-923, 999)", ((398, 923), (999, 999))),
    ("food and drink (924-969)", ((924, 969),)),
    ("nature, people, plants and fungi (970-998)", ((970, 998),)),
)


def imagenet_group(index: int) -> str:
    """The coarse super-category of ImageNet-1k class ``index`` (see :data:`IMAGENET_GROUPS`).

    Examples:
        >>> imagenet_group(207), imagenet_group(285), imagenet_group(965)
        ('dogs (151-268)', 'other animals (0-150, 269-397)', 'food and drink (924-969)')
    """
    return next(name for name, spans in IMAGENET_GROUPS if any(lo <= index <= hi for lo, hi in spans))


def _imagenet_cells(results: dict[str, Any]) -> list[dict[str, Any]]:
    datasets = _datasets(results)
    return [
        c for c in results["cells"]
        if c["method_kind"] == "map-elites" and datasets.get(c["model"]) == "imagenet-photos"
        and len(c["metrics"].get("confidence") or []) > 0
    ]  # fmt: skip


def super_categories_section(results: dict[str, Any]) -> list[str]:
    """Markdown: per ImageNet evolution cell, median confidence and share >= 99% per coarse super-category."""
    cells = [c for c in _imagenet_cells(results) if len(c["metrics"]["confidence"]) >= 50]
    if not cells:
        return []
    lines = [
        "## Which ImageNet super-categories fool most",
        "",
        ("A coarse grouping by class index (the WordNet order of ImageNet-1k): dogs 151-268, other animals "
         "0-150 and 269-397, man-made objects 398-923 and 999, food and drink 924-969, nature, people, "
         "plants and fungi 970-998."),
        "",
    ]  # fmt: skip
    header = ["model", "defense", "method", "super-category", "classes", "median confidence", ">= 99%"]
    rows = []
    for c in cells:
        by: dict[str, list[float]] = {}
        for idx, conf in zip(c["metrics"]["class_indices"], c["metrics"]["confidence"], strict=True):
            by.setdefault(imagenet_group(int(idx)), []).append(float(conf))
        for name, _ in IMAGENET_GROUPS:
            if name in by:
                v = by[name]
                share = sum(x >= 0.99 for x in v) / len(v)
                rows.append([c["model"], c["defense"], c["method"], name, str(len(v)),
                             fmt(statistics.median_low(v)), fmt(share)])  # fmt: skip
    return [*lines, *table(header, rows), ""]


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def diversity_section(groups: list[dict[str, Any]]) -> list[str]:
    """Markdown of the diversity across independent runs (``runs = N``): one summary row per method, then per class."""
    if not groups:
        return []
    lines = [
        "## Diversity across independent runs",
        "",
        (
            "Mean pairwise distance between the runs' elites of each class: in pixels (L2 of the images scaled "
            "to [0, 1], divided by sqrt(number of pixel values)) and in the model's penultimate features (the "
            "input of its last linear layer, L2 divided by sqrt(feature count)); next to the same measure for "
            "real images of that class. Medians over the classes:"
        ),
        "",
    ]
    header = ["model", "defense", "method", "runs", "mean elite confidence", "pixels: runs", "pixels: real",
              "features: runs", "features: real", "reference"]  # fmt: skip
    rows = [
        [d["model"], d["defense"], d["method"], str(d["runs"]), fmt(d["mean_confidence"]), _num(d["median_pixel"]),
         _num(d["median_real_pixel"]), _num(d["median_feature"]), _num(d["median_real_feature"]), d["reference"]]
        for d in groups
    ]  # fmt: skip
    lines += [*table(header, rows), ""]
    for d in groups:
        if len(d["classes"]) > 20:
            continue  # many classes: the medians above (every class is in results.json)
        lines += [f"### {d['model']} / {d['defense']} / {d['method']}: per class", ""]
        per = [
            [str(c), fmt(d["per_class_mean_confidence"][i]), _num(d["pixel"][i]), _num(d["real_pixel"][i]),
             _num(d["feature"][i]), _num(d["real_feature"][i]), str(d["real_count"][i])]
            for i, c in enumerate(d["classes"])
        ]  # fmt: skip
        lines += table(["class", "mean confidence", "pixels: runs", "pixels: real", "features: runs",
                        "features: real", "real images"], per)  # fmt: skip
        lines.append("")
    return lines


def _plots(results: dict[str, Any], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made: list[str] = []
    evo = [c for c in results["cells"] if c["method_kind"] == "map-elites" and c["metrics"].get("curve")]
    if evo:
        fig, ax = plt.subplots(figsize=(7, 4))
        for c in evo:
            curve = torch.tensor(c["metrics"]["curve"], dtype=torch.float64)
            ax.plot(curve[:, 0], (1 - curve[:, 1]).clamp(min=1e-7), label=f"{c['model']}/{c['defense']}/{c['method']}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("1 - median best confidence")
        ax.axhline(1e-4, color="grey", linestyle=":")
        ax.legend(fontsize=6)
        made.append(_save(fig, out / "plots" / "confidence_vs_evaluations.png", out))
    made += _evolution_plots(results, out, plt)
    pgd = [c for c in results["cells"] if c["method_kind"] == "pgd"]
    if pgd:
        fig, ax = plt.subplots(figsize=(6, 4))
        several = len({c["method"] for c in pgd}) > 1  # then each line names its method
        for c in pgd:
            ra = sorted(((float(e), v) for e, v in c["metrics"]["robust_accuracy"].items()), key=lambda t: t[0])
            label = f"{c['model']}/{c['defense']}" + (f"/{c['method']}" if several else "")
            ax.plot([0.0] + [e for e, _ in ra], [c["metrics"]["clean_accuracy"]] + [v for _, v in ra], marker="o",
                    label=label)  # fmt: skip
        norms = sorted({"L2" if str(c.get("params", {}).get("norm", "inf")) == "2" else "L-inf" for c in pgd})
        ax.set_xlabel(f"eps ({', '.join(norms)})")
        ax.set_ylabel("robust accuracy")
        ax.legend(fontsize=6)
        made.append(_save(fig, out / "plots" / "robust_accuracy_vs_eps.png", out))
        fig, ax = plt.subplots(figsize=(6, 4))
        largest = [max(c["metrics"]["robust_accuracy"], key=float) for c in pgd]  # each cell's own largest eps
        one_eps = len(set(largest)) == 1
        for c, eps in zip(pgd, largest, strict=True):
            at_largest = c["metrics"]["robust_accuracy"][eps]
            clean = next(
                r["clean_accuracy"]
                for r in results["clean"]
                if r["model"] == c["model"] and r["defense"] == c["defense"]
            )
            ax.scatter(clean, at_largest)
            label = f"{c['model']}/{c['defense']}" + ("" if one_eps else f" ({c['method']}, eps {eps})")
            ax.annotate(label, (clean, at_largest), fontsize=6)
        ax.set_xlabel("clean accuracy (cost)")
        at = f"eps {largest[0]}" if one_eps else "each PGD method's largest eps"  # never one eps for several
        ax.set_ylabel(f"robust accuracy at {at} (benefit)")
        made.append(_save(fig, out / "plots" / "defense_cost_vs_benefit.png", out))
    return made


def _evolution_plots(results: dict[str, Any], out: Path, plt: Any) -> list[str]:
    """The confidence histogram over classes and the confidence quantiles vs evaluations (first run of each group)."""
    made: list[str] = []
    cells = [c for c in results["cells"] if c["method_kind"] == "map-elites" and (c.get("run") or 1) == 1]
    spread = [c for c in cells if len(c["metrics"].get("confidence") or []) >= 2]
    if spread:
        fig, ax = plt.subplots(figsize=(7, 4))
        for c in spread:
            ax.hist(c["metrics"]["confidence"], bins=40, range=(0.0, 1.0), histtype="step",
                    label=f"{c['model']}/{c['defense']}/{c.get('group') or c['method']}")  # fmt: skip
        ax.set_xlabel("best confidence of a class")
        ax.set_ylabel("classes")
        ax.legend(fontsize=6)
        made.append(_save(fig, out / "plots" / "confidence_histogram.png", out))
    curves = [c for c in cells if c["metrics"].get("curve_quantiles")]
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4))
        for c in curves:
            q = torch.tensor(c["metrics"]["curve_quantiles"], dtype=torch.float64)  # evals, q10, q25, q50, q75, q90
            (line,) = ax.plot(q[:, 0], q[:, 3], label=f"{c['model']}/{c['defense']}/{c.get('group') or c['method']}")
            ax.fill_between(q[:, 0], q[:, 2], q[:, 4], color=line.get_color(), alpha=0.25, linewidth=0)
            ax.fill_between(q[:, 0], q[:, 1], q[:, 5], color=line.get_color(), alpha=0.1, linewidth=0)
        ax.set_xscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("best confidence per class")
        ax.set_title("median over classes; bands: 25-75% and 10-90%", fontsize=9)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6)
        made.append(_save(fig, out / "plots" / "confidence_quantiles_vs_evaluations.png", out))
    return made


def _save(fig: Any, path: Path, out: Path) -> str:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    _io.atomic_write_bytes(path, buf.getvalue())
    return str(path.relative_to(out))


def write_reports(results: dict[str, Any], out: Path) -> None:
    """Write ``results.json``, the plots and ``report.md`` (all atomically)."""
    plots = _plots(results, out)
    _io.write_json(out / "results.json", results)
    _io.write_text(out / "report.md", markdown(results, plots))
