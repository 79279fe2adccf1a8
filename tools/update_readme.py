"""Regenerate the README's scorecard block from a suite's ``results.json``.

    python tools/update_readme.py [--results out/quick/results.json] [--run]

With ``--run`` (or when the results file is missing) the quick suite is run first
(``foolbench bench --suite quick``). The block between ``<!-- scorecard:quick -->``
and ``<!-- /scorecard:quick -->`` is replaced, and the ``scorecard:paper`` block from
``benchmarks/out/paper/results.json`` when it exists; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- scorecard:quick -->", "<!-- /scorecard:quick -->"
PAPER_START, PAPER_END = "<!-- scorecard:paper -->", "<!-- /scorecard:paper -->"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def claims_table(res: dict[str, Any]) -> list[str]:
    rows = [f"| {c['claim']} | {c['published']} | {c['measured']} |" for c in res["claims"]]
    return ["| claim | published | measured |", "|---|---|---|", *rows]


def block(res: dict[str, Any]) -> str:
    cells = res["cells"]
    lines = [
        START,
        (
            f"Measured by `foolbench bench --suite quick` (foolbench {res['foolbench']} with the unreleased changes "
            f"of CHANGELOG.md, torch "
            f"{res['torch']}, {res['device']}, seed {res['seed']}, {_threads(res)}; {len(cells)} cells; the suite's last "
            f"invocation took {_minutes(res['seconds'])}). Fooling images (share of "
            "the 10 digits at >= 99.99%, and the evaluations used); robust accuracy at eps 0.3 under PGD, and the "
            "worst case over PGD and the gradient-free Square Attack:"
        ),
        "",
        (
            "| model | defense | clean acc. | evolve, direct | evolve, CPPN | random sampling, direct | gradient ascent "
            "| PGD eps 0.3 robust acc. | worst case (PGD, Square) | UAP eps 0.3 fooling |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def find(model: str, defense: str, kind: str, encoding: str | None = None) -> dict[str, Any] | None:
        for c in cells:
            same = c["model"] == model and c["defense"] == defense and c["method_kind"] == kind
            if same and (encoding is None or c["params"].get("encoding") == encoding):
                return dict(c["metrics"])
        return None

    def evo(m: dict[str, Any] | None) -> str:
        if m is None:
            return "-"
        det = f", {pct(m['detection_rate'])} detected" if "detection_rate" in m else ""
        return f"{pct(m['fooled_0_9999'])} ({m['evaluations']:,}){det}"

    for row in res["clean"]:
        model, defense = row["model"], row["defense"]
        pgd = find(model, defense, "pgd")
        uap = find(model, defense, "uap")
        worst = find(model, defense, "attacks")
        robust = None if pgd is None else list(pgd["robust_accuracy"].values())[-1]
        pgd_text = pct(robust) + (f", {pct(pgd['detection_rate'])} detected" if pgd and "detection_rate" in pgd else "")
        lines.append(
            f"| {model} | {defense} | {pct(row['clean_accuracy'])} | {evo(find(model, defense, 'map-elites', 'direct'))} "
            f"| {evo(find(model, defense, 'map-elites', 'cppn'))} | {evo(find(model, defense, 'random-search', 'direct'))} "
            f"| {evo(find(model, defense, 'gradient-ascent'))} "
            f"| {pgd_text} | {pct(None if worst is None else worst['robust_worst_case'])} "
            f"| {pct(None if uap is None else uap['fooling_rate'])} |"
        )
    lines += [
        "",
        "Published claims, as measured by this suite:",
        "",
        "| claim | published | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {c['claim']} | {c['published']} | {c['measured']} |" for c in res["claims"]]
    lines.append(END)
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def _threads(res: dict[str, Any]) -> str:
    settings = res.get("settings", {})
    threads = settings.get("torch_threads", settings.get("threads"))
    return "torch threads as recorded" if threads is None else f"torch threads {threads}"


def paper_block(res: dict[str, Any]) -> str:
    lines = [
        PAPER_START,
        (
            "The `paper` suite (`foolbench bench --suite paper`: MNIST LeNet and CNN, EfficientNet-Lite0 on real "
            f"photos; foolbench {res['foolbench']}, torch {res['torch']}, {res['device']}, seed {res['seed']}, "
            f"{len(res['cells'])} cells) measured:"
        ),
        "",
        *claims_table(res),
        PAPER_END,
    ]
    return "\n".join(lines)


def replace(text: str, start: str, end: str, new: str) -> str:
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {start} ... {end} block")
    return pattern.sub(lambda _: new, text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "out" / "quick" / "results.json"))
    parser.add_argument("--run", action="store_true")
    args = parser.parse_args()
    path = Path(args.results)
    if args.run or not path.is_file():
        from foolbench.bench import run_suite

        run_suite("quick", out=path.parent)
    res = json.loads(path.read_text())
    readme = ROOT / "README.md"
    text = replace(readme.read_text(), START, END, block(res))
    paper = path.parent.parent / "paper" / "results.json"
    if paper.is_file():
        text = replace(text, PAPER_START, PAPER_END, paper_block(json.loads(paper.read_text())))
    readme.write_text(text)
    print(f"updated the scorecard block of {readme} from {path}")


if __name__ == "__main__":
    main()
