"""Evaluations-to-threshold curves of the CPU proxy over ten seeds, from ``benchmarks/results/search_ablation_cpu.json``.

``python tools/plot_search_ablation.py`` writes ``docs/figures/cpu/search_ablation_curves.png``: for
each variant (the default search, mutation strength 2, strength 2 with bf16 scores re-scored in
float32 at 2.5x the budget, all ten seeds; the last with parents from the classes below 99%, five
seeds), the median confidence of the 10 texture classes (the lower middle value, as the benchmark
reports it) against evaluations (one thin line per seed, the mean over seeds thick) and the share of
the class-runs (10 classes x seeds) at >= 99%; dashed, the bf16 + verify variant on the five seeds
of the last one. Beside it a manifest ``.json`` names the results file (and its
SHA-256: the docs test fails when the results change until the figure is redrawn) and the machine.
``--source`` / ``--out`` draw another results file elsewhere. It prints the evaluations at which each variant's mean curve first reaches 90/95/99%.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "benchmarks" / "results" / "search_ablation_cpu.json"
OUT = ROOT / "docs" / "figures" / "cpu" / "search_ablation_curves.png"
VARIANTS = {  # name in the results file -> legend
    "baseline": "default (strength 1, float32)",
    "strength 2": "strength 2 (float32)",
    "bf16 + verify + str. 2": "strength 2, bf16 + verify",
    "bf16 + verify + str. 2 + unmet 99%": "the same, parents from classes < 99%",
}
PAIRED = ("bf16 + verify + str. 2", "bf16 + verify + str. 2 + unmet 99%")  # drawn on the same seeds too
MACHINE = "2-core x86_64 CPU (avx512_bf16), torch 2.13.0+cpu"


def median(values: list[float]) -> float:
    """The lower of the two middle values for an even count, as ``torch.median`` (and the benchmark) report."""
    return sorted(values)[(len(values) - 1) // 2]


def seeds(data: dict[str, Any], name: str) -> dict[int, dict[str, Any]]:
    """Every seed's run of variant ``name``: seed 0 from ``imagenet``, the others from ``imagenet_seeds``;
    the default's seeds 0-4 are the float32 runs of ``imagenet_precision`` (channels-last, as the docs' table)."""
    runs = {0: data["imagenet"].get(name)} | {int(s): v.get(name) for s, v in data["imagenet_seeds"].items()}
    if name == "baseline":
        runs |= {int(s): v["fp32"] for s, v in data.get("imagenet_precision", {}).items() if "fp32" in v}
    return {s: r for s, r in sorted(runs.items()) if r is not None}


def at(run: dict[str, Any], grid: list[int]) -> list[list[float]]:
    """The run's per-class confidences at each evaluation count of ``grid`` (the last record at or before it)."""
    out, i = [], 0
    evals, conf = run["evaluations"], run["confidence"]
    for g in grid:
        while i + 1 < len(evals) and evals[i + 1] <= g:
            i += 1
        out.append(conf[i])
    return out


def mean_and_share(sampled: dict[int, list[list[float]]]) -> tuple[list[float], list[float]]:
    """Per grid point: the mean over seeds of each seed's median class, and the % of class-runs >= 99%."""
    points = len(next(iter(sampled.values())))
    count = sum(len(rows[0]) for rows in sampled.values())  # class-runs: classes x seeds
    mean = [statistics.fmean(median(rows[i]) for rows in sampled.values()) for i in range(points)]
    share = [100 * sum(c >= 0.99 for rows in sampled.values() for c in rows[i]) / count for i in range(points)]
    return mean, share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--source", type=Path, default=SOURCE, help="results file (default: the repository's)")
    parser.add_argument("--out", type=Path, default=OUT, help="PNG to write (a manifest .json beside it)")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(args.source.read_text(encoding="utf-8"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colours = ("tab:grey", "tab:blue", "tab:red", "tab:green")
    for (name, label), colour in zip(VARIANTS.items(), colours, strict=True):
        runs = seeds(data, name)
        if len(runs) < 2:
            print(f"{name}: {len(runs)} seed(s), skipped")
            continue
        end = min(r["evaluations"][-1] for r in runs.values())
        grid = list(range(400, end + 1, 400))
        sampled = {s: at(r, grid) for s, r in runs.items()}
        medians = {s: [median(c) for c in rows] for s, rows in sampled.items()}
        for curve in medians.values():
            left.plot(grid, [100 * m for m in curve], color=colour, alpha=0.25, linewidth=0.7)
        mean, hits = mean_and_share(sampled)
        left.plot(grid, [100 * m for m in mean], color=colour, linewidth=2, label=f"{label}, {len(runs)} seeds")
        right.plot(grid, hits, color=colour, linewidth=2, label=label)
        if name == PAIRED[1]:  # its reference on the same seeds, dashed: the pair the docs' table compares
            ref = {s: r for s, r in seeds(data, PAIRED[0]).items() if s in runs}
            ref_mean, ref_hits = mean_and_share({s: at(r, grid) for s, r in ref.items()})
            same = f"{VARIANTS[PAIRED[0]]}, the same {len(ref)} seeds"
            left.plot(grid, [100 * m for m in ref_mean], color="tab:red", linewidth=1.5, linestyle="--", label=same)
            right.plot(grid, ref_hits, color="tab:red", linewidth=1.5, linestyle="--", label=same)
        reach = [next((f"{g:,}" for g, m in zip(grid, mean, strict=True) if m >= lv), "-") for lv in (0.9, 0.95, 0.99)]
        finals = [median(r["final"]) for r in runs.values()]
        print(
            f"{name}: seeds {sorted(runs)}; mean of the per-seed medians first >= 90/95/99% at {' / '.join(reach)} "
            f"evaluations; final per-seed medians {', '.join(f'{100 * f:.1f}' for f in finals)}%; "
            f"class-runs >= 99% at the end: {sum(c >= 0.99 for r in runs.values() for c in r['final'])}"
        )
    left.axhline(99, color="black", linewidth=0.6, linestyle=":")
    left.set(
        xlabel="evaluations",
        ylabel="median confidence of the 10 classes (%)",
        ylim=(0, 100),
        title="per seed (thin), mean over seeds (thick)",
    )
    left.legend(fontsize=8, loc="lower right")
    left.grid(alpha=0.3)
    right.set(
        xlabel="evaluations", ylabel="class-runs >= 99% (% of 10 classes x seeds)", title="classes fooled at >= 99%"
    )
    right.grid(alpha=0.3)
    fig.suptitle(
        f"MAP-Elites + CPPN vs EfficientNet-Lite0 224x224, 10 texture classes, batch 16 ({MACHINE})", fontsize=9
    )
    fig.tight_layout()
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    raw = out.read_bytes()
    source = args.source.resolve()
    manifest = {
        "figure": out.name,
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "source": source.relative_to(ROOT).as_posix() if source.is_relative_to(ROOT) else str(source),
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "device": MACHINE,
        "command": "benchmarks/bench_search_ablation.py --task imagenet --seed N (N = 0-9; the 'bf16 + verify + "
        "str. 2' runs with --evaluations 40000 --only 'bf16 + verify + str. 2', and N = 0-4 with --only 'bf16 + "
        "verify + str. 2 + unmet 99%'), then tools/plot_search_ablation.py",
    }
    out.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(raw) / 1000:.0f} KB)")


if __name__ == "__main__":
    main()
