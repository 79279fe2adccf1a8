"""Figures and tables from a ``benchmarks/bench_imagenet_gpu.py --out DIR`` run (its ``confidence.json``).

``python tools/plot_gpu_imagenet.py RESULT.json [--best DIR/best.png] [--name NAME]`` writes
``docs/figures/gpu/NAME_curve.png`` (median confidence over the classes vs evaluations, and the
histogram of the final per-class confidences) and, given ``--best``, a shrunk copy of the best-images
grid as ``NAME_best.png``, each with a manifest ``.json`` naming the run (results file, device) behind it; it prints the milestone rows and the ImageNet super-category table as
Markdown for the docs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from make_docs_figures import _shrink

from foolbench.bench._report import imagenet_group


def _manifest(png: Path, result: Path, data: dict[str, Any]) -> None:
    """``NAME.json`` beside a GPU figure: the PNG it describes, and the run (results file, device) behind it."""
    raw = png.read_bytes()
    manifest = {
        "figure": png.name,
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "source": result.resolve().relative_to(ROOT).as_posix(),
        "device": data["device"],
        "torch": data["torch"],
        "command": "benchmarks/bench_imagenet_gpu.py, then tools/plot_gpu_imagenet.py",
    }
    png.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("result", type=Path)
    parser.add_argument("--best", type=Path, default=None)
    parser.add_argument("--name", default="imagenet_h100")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(args.result.read_text(encoding="utf-8"))
    out = ROOT / "docs" / "figures" / "gpu"
    out.mkdir(parents=True, exist_ok=True)
    conf = [100 * c for c in data["confidence"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot([e / 1e6 for e in data["history_evaluations"]], [100 * m for m in data["history_median"]])
    left.set(xlabel="evaluations (millions)", ylabel="median best confidence (%)", title="all 1,000 classes")
    left.grid(alpha=0.3)
    right.hist(conf, bins=50)
    right.set(xlabel="float32 confidence of the class's elite (%)", ylabel="classes", title="final")
    fig.suptitle(f"MAP-Elites + CPPN vs EfficientNet-Lite0, {data['device']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / f"{args.name}_curve.png", dpi=110)
    _manifest(out / f"{args.name}_curve.png", args.result, data)
    if args.best is not None:
        _shrink(args.best, out / f"{args.name}_best.png")
        _manifest(out / f"{args.name}_best.png", args.result, data)
    print("| evaluations | search seconds | median | >= 50% | >= 90% | >= 99% | >= 99.6% | >= 99.99% |")
    print("|---|---|---|---|---|---|---|---|")
    for r in data["rows"]:
        print(
            f"| {r['evaluations']:,} | {r['search_seconds']} | {100 * r['median']:.1f}% | {r['>=50%']} | "
            f"{r['>=90%']} | {r['>=99%']} | {r['>=99.6%']} | {r['>=99.99%']} |"
        )
    groups: dict[str, list[float]] = defaultdict(list)
    for c, p in zip(data["classes"], data["confidence"], strict=True):
        groups[imagenet_group(c)].append(p)
    print("\n| super-category | classes | median | >= 99% |\n|---|---|---|---|")
    for name, values in sorted(groups.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"| {name} | {len(values)} | {100 * statistics.median(values):.1f}% | {sum(v >= 0.99 for v in values)} |")


if __name__ == "__main__":
    main()
