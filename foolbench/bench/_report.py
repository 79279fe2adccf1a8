"""Transfer matrices, the published-claims table, and the report files of a suite."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch

from foolbench import _io
from foolbench.search import fooling_rate

__all__ = ["claims", "transfer", "write_reports"]


def transfer(runner: Any) -> dict[str, Any]:
    """UAP and PGD transfer between the suite's undefended models (rows: source, columns: target)."""
    out: dict[str, Any] = {}
    undefended = [c for c in runner.cells if c["defense_kind"] == "none"]
    for kind, field_name in (("uap", "perturbation"), ("pgd", "adversarial")):
        sources = {
            c["model"]: runner.extras.get(c["key"], {}).get(field_name) for c in undefended if c["method_kind"] == kind
        }
        names = [n for n, t in sources.items() if t is not None]
        if len(names) < 2:
            continue
        shapes = {tuple(runner.models[n].classifier.input_shape) for n in names}
        if len(shapes) != 1:
            continue
        datasets = {runner.cfg_model(n).get("dataset", runner.cfg.data["dataset"]) for n in names}
        if len(datasets) != 1:
            continue
        runner.use(names[0])
        x = runner.test[0]
        matrix = []
        for src in names:
            row = []
            for dst in names:
                clf = runner.models[dst].classifier
                if kind == "uap":
                    row.append(fooling_rate(clf, x, sources[src]))
                else:
                    cell = next(c for c in undefended if c["model"] == src and c["method_kind"] == "pgd")
                    labels = runner.extras[cell["key"]]["labels"]
                    row.append(float((clf.predict(sources[src]).cpu() != labels).double().mean()))
            matrix.append(row)
        out[kind] = {"models": names, "matrix": matrix}
    return out


def _cells(results: dict[str, Any], **match: str) -> list[dict[str, Any]]:
    return [c for c in results["cells"] if all(c.get(k) == v for k, v in match.items())]


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.2f}%" if pct else f"{x:,.0f}"


def claims(results: dict[str, Any]) -> list[dict[str, str]]:
    """Each published claim of DESIGN.md with what this suite measured (or "not in this suite")."""
    rows: list[dict[str, str]] = []

    datasets = {
        str(m.get("name") or m.get("zoo") or str(m.get("factory", "")).split(":")[-1]): m.get(
            "dataset", results["data"]["dataset"]
        )
        for m in results["config"].get("models", [])
    }

    def evolved(encoding: str, defense_kind: str = "none", dataset: str = "mnist") -> str | None:
        found = [
            c
            for c in _cells(results, method_kind="map-elites", defense_kind=defense_kind)
            if c["params"]["encoding"] == encoding and datasets.get(c["model"], "mnist") == dataset
        ]
        if not found:
            return None
        parts = []
        for c in found:
            m, n = c["metrics"], c["metrics"]["classes"]
            extra = (
                f", {round(m['fooled_0_996'] * n)}/{n} >= 99.6%" if dataset != "mnist" and "fooled_0_996" in m else ""
            )
            parts.append(
                f"{c['model']}: {round(m['fooled_0_9999'] * n)}/{n} classes >= 99.99%, "
                f"{round(m['fooled_0_99'] * n)}/{n} >= 99%{extra} "
                f"(median {_fmt(m['median_confidence'])}, {m['evaluations']:,} evals)"
            )
        return "; ".join(parts)

    def add(claim: str, source: str, published: str, measured: str | None) -> None:
        rows.append(
            {"claim": claim, "source": source, "published": published, "measured": measured or "not in this suite"}
        )

    paper = "Nguyen, Yosinski & Clune, CVPR 2015"
    add("Direct-encoded evolved images fool MNIST nets on every digit", paper, ">= 99.99%", evolved("direct"))
    add("CPPN-encoded evolved images fool MNIST nets on every digit", paper, ">= 99.99%", evolved("cppn"))
    add(
        "CPPN images fool an ImageNet net for many classes",
        paper + ", Fig. 1",
        ">= 99.6% (AlexNet)",
        evolved("cppn", dataset="imagenet-photos"),
    )
    rand = _cells(results, method_kind="random", defense_kind="none")
    add(
        "Random, unevolved images get low confidence",
        paper,
        "low",
        "; ".join(
            f"{c['model']}: median top confidence {_fmt(c['metrics']['direct_median_confidence'])} (noise), "
            f"{_fmt(c['metrics']['cppn_median_confidence'])} (CPPN)"
            for c in rand
        )
        or None,
    )
    ga = _cells(results, method_kind="gradient-ascent", defense_kind="none")
    add(
        "Gradient ascent from noise produces fooling images",
        paper,
        ">= 99.99%",
        "; ".join(
            f"{c['model']}: {_fmt(c['metrics']['fooled_0_9999'])} of classes >= 99.99% "
            f"({c['metrics']['evaluations']} forward-backward passes)"
            for c in ga
        )
        or None,
    )
    fcr = [t for t in results["defense_tables"] if t["rows"] and "fresh_median_confidence" in t["rows"][0]]
    add(
        "Retraining with an extra fooling class: MNIST nets are still fooled",
        paper,
        "MNIST still 99.99%",
        "; ".join(
            f"{t['model']}: fresh search median {_fmt(t['rows'][-1]['fresh_median_confidence'])} after "
            f"{t['rows'][-1]['round']} round(s), {_fmt(t['rows'][-1]['fresh_fooled'])} of classes >= 99.99%; "
            f"evolution after retraining (this suite's budget): {evolved('direct', 'fooling-class') or '-'}"
            for t in fcr
        )
        or None,
    )
    uap = _cells(results, method_kind="uap", defense_kind="none")
    tr = results["transfer"].get("uap")
    off = None
    if tr:
        n = len(tr["models"])
        off = statistics.mean(tr["matrix"][i][j] for i in range(n) for j in range(n) if i != j)
    add(
        "A universal perturbation fools most inputs and transfers across architectures",
        "Moosavi-Dezfooli et al., CVPR 2017",
        "~80% fooling; > 53% transfer",
        "; ".join(f"{c['model']}: {_fmt(c['metrics']['fooling_rate'])} held-out" for c in uap)
        + (f"; mean transfer {_fmt(off)}" if off is not None else "")
        or None,
    )
    aft = [t for t in results["defense_tables"] if t["rows"] and "fooling_rate" in t["rows"][0]]
    add(
        "Fine-tuning on perturbed images leaves the UAP fooling rate high",
        "same",
        "~80%",
        "; ".join(
            f"{t['model']}: fresh UAP {_fmt(t['rows'][0]['fooling_rate'])} -> {_fmt(t['rows'][-1]['fooling_rate'])} "
            f"after {t['rows'][-1]['round']} round(s)"
            for t in aft
        )
        or None,
    )
    pgd_tr = results["transfer"].get("pgd")
    if pgd_tr:
        n = len(pgd_tr["models"])
        mean_off = statistics.mean(pgd_tr["matrix"][i][j] for i in range(n) for j in range(n) if i != j)
        measured = f"PGD examples misclassified by the other models: mean {_fmt(mean_off)}"
    else:
        measured = None
    add("An adversarial image made for one network often fails on another", "common observation", "-", measured)
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _markdown(results: dict[str, Any], plots: list[str]) -> str:
    lines = [
        f"# foolbench scorecard: suite `{results['suite']}`",
        "",
        (
            f"foolbench {results['foolbench']}, torch {results['torch']}, Python {results['python']}, "
            f"device {results['device']}, seed {results['seed']}, {results['seconds']:.0f} s."
        ),
        "",
        "## Clean accuracy (held-out)",
        "",
        *_table(
            ["model", "defense", "clean accuracy", "detector false positives"],
            [
                [c["model"], c["defense"], _fmt(c["clean_accuracy"]), _fmt(c.get("false_positive_rate_held_out"))]
                for c in results["clean"]
            ],
        ),
        "",
    ]
    cells = results["cells"]
    search = [c for c in cells if c["method_kind"] in ("map-elites", "gradient-ascent")]
    if search:
        lines += ["## Fooling images", ""]
        lines += _table(
            ["model", "defense", "method", ">= 99%", ">= 99.99%", "median conf.", "evaluations", "evals to 99.99% (median)", "detected"],
            [
                [
                    c["model"], c["defense"], c["method"], _fmt(c["metrics"]["fooled_0_99"]),
                    _fmt(c["metrics"]["fooled_0_9999"]), _fmt(c["metrics"]["median_confidence"]),
                    f"{c['metrics']['evaluations']:,}", _fmt(c["metrics"]["median_evaluations_to_0_9999"], pct=False),
                    _fmt(c["metrics"].get("detection_rate")),
                ]
                for c in search
            ],
        )  # fmt: skip
        lines.append("")
    pgd = [c for c in cells if c["method_kind"] == "pgd"]
    if pgd:
        eps = list(pgd[0]["metrics"]["robust_accuracy"])
        lines += ["## Robust accuracy under PGD (adaptive: BPDA through non-differentiable defenses)", ""]
        lines += _table(
            ["model", "defense", "clean", *[f"eps {e}" for e in eps], "detected"],
            [
                [c["model"], c["defense"], _fmt(c["metrics"]["clean_accuracy"])]
                + [_fmt(c["metrics"]["robust_accuracy"].get(e)) for e in eps]
                + [_fmt(c["metrics"].get("detection_rate"))]
                for c in pgd
            ],
        )
        lines.append("")
    uap = [c for c in cells if c["method_kind"] == "uap"]
    if uap:
        lines += ["## Universal perturbations (held-out fooling rate)", ""]
        lines += _table(
            ["model", "defense", "eps", "fooling rate", "detected"],
            [
                [
                    c["model"],
                    c["defense"],
                    str(c["params"]["eps"]),
                    _fmt(c["metrics"]["fooling_rate"]),
                    _fmt(c["metrics"].get("detection_rate")),
                ]
                for c in uap
            ],
        )
        lines.append("")
    rand = [c for c in cells if c["method_kind"] == "random"]
    if rand:
        lines += ["## Random generation-0 images (the paper's baseline)", ""]
        lines += _table(
            ["model", "defense", "noise: median / max top confidence", "CPPN: median / max top confidence"],
            [
                [
                    c["model"], c["defense"],
                    f"{_fmt(c['metrics']['direct_median_confidence'])} / {_fmt(c['metrics']['direct_max_confidence'])}",
                    f"{_fmt(c['metrics']['cppn_median_confidence'])} / {_fmt(c['metrics']['cppn_max_confidence'])}",
                ]
                for c in rand
            ],
        )  # fmt: skip
        lines.append("")
    for kind, title in (("uap", "UAP transfer (fooling rate)"), ("pgd", "PGD transfer (misclassified)")):
        tr = results["transfer"].get(kind)
        if tr:
            lines += [f"## {title}: rows made on, columns evaluated on", ""]
            lines += _table(
                ["from \\ to", *tr["models"]],
                [[m] + [_fmt(v) for v in row] for m, row in zip(tr["models"], tr["matrix"], strict=True)],
            )
            lines.append("")
    for t in results["defense_tables"]:
        rows = t["rows"]
        if rows:
            lines += [f"## Defense rounds: {t['model']} / {t['defense']}", ""]
            lines += _table(
                list(rows[0]),
                [
                    ["-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()]
                    for r in rows
                ],
            )
            lines.append("")
    lines += ["## Published claims", ""]
    lines += _table(
        ["claim", "source", "published", "measured"],
        [[r["claim"], r["source"], r["published"], r["measured"]] for r in results["claims"]],
    )
    lines.append("")
    if plots:
        lines += ["## Plots", "", *[f"![{Path(p).stem}]({p})" for p in plots], ""]
    grids = [c for c in search if "grid" in c["metrics"]]
    if grids:
        lines += ["## Fooling images per cell", ""]
        lines += [
            f"### {c['model']} / {c['defense']} / {c['method']}\n\n![{c['key']}]({c['metrics']['grid']})\n"
            for c in grids
        ]
    return "\n".join(lines) + "\n"


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
    pgd = [c for c in results["cells"] if c["method_kind"] == "pgd"]
    if pgd:
        fig, ax = plt.subplots(figsize=(6, 4))
        for c in pgd:
            ra = c["metrics"]["robust_accuracy"]
            xs = [0.0, *map(float, ra)]
            ax.plot(
                xs, [c["metrics"]["clean_accuracy"], *ra.values()], marker="o", label=f"{c['model']}/{c['defense']}"
            )
        ax.set_xlabel("eps (L-inf)")
        ax.set_ylabel("robust accuracy")
        ax.legend(fontsize=6)
        made.append(_save(fig, out / "plots" / "robust_accuracy_vs_eps.png", out))
        fig, ax = plt.subplots(figsize=(6, 4))
        for c in pgd:
            ra = list(c["metrics"]["robust_accuracy"].values())
            clean = next(
                r["clean_accuracy"]
                for r in results["clean"]
                if r["model"] == c["model"] and r["defense"] == c["defense"]
            )
            ax.scatter(clean, ra[-1])
            ax.annotate(f"{c['model']}/{c['defense']}", (clean, ra[-1]), fontsize=6)
        ax.set_xlabel("clean accuracy (cost)")
        ax.set_ylabel(f"robust accuracy at eps {list(pgd[0]['metrics']['robust_accuracy'])[-1]} (benefit)")
        made.append(_save(fig, out / "plots" / "defense_cost_vs_benefit.png", out))
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
    _io.write_text(out / "report.md", _markdown(results, plots))
