"""Which search settings fool faster at equal budget: ``python benchmarks/bench_search_ablation.py``.

Each variant changes one switch of the default MAP-Elites + CPPN search (parents ``unmet-first``,
mutation strength 1); all run side by side in one process:

- ``--task mnist``: evaluations until all 10 lenet_mnist digits reach 99.99% (CPPN, batch 64),
  median over ``--seeds`` seeds, with a budget of 150,000 evaluations per run.
- ``--task imagenet``: the CPU proxy of the paper's ImageNet run: EfficientNet-Lite0 at 224x224, the
  10 texture classes of ``bench_cppn.py``, ``--minutes`` of search per variant (batch 16): median
  confidence, classes >= 99%, and the evaluations at which the median first reached 50/90/99%.

Variants: ``baseline`` (unmet-first, strength 1), ``uniform`` parents (the paper), ``curiosity``
parents, mutation ``strength`` 0.5 and 2 (CPPN operator rates and weight steps), ``cycle``
(strengths 0.5/1/2 in turn: several emitters of different strengths), and for ImageNet
``warm-start`` (the first quarter of the time on all 1,000 classes, then the 10 classes seeded
with the elites of that warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

import foolbench as fb

IMAGENET_CLASSES = [815, 489, 646, 919, 611, 556, 904, 741, 539, 488]  # same as bench_cppn.py


def variants(include_warm: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        "baseline": {},
        "uniform": {"parents": "uniform"},
        "curiosity": {"parents": "curiosity"},
        "strength 0.5": {"mutation_schedule": 0.5},
        "strength 2": {"mutation_schedule": 2.0},
        "cycle 0.5/1/2": {"mutation_schedule": fb.search.CycleStrength((0.5, 1.0, 2.0))},
    }
    if include_warm:
        out["warm-start"] = {"warm": True}
    return out


def first_reach(result: fb.search.FoolingResult, level: float) -> str:
    med = result.history.median
    hit = torch.nonzero(med >= level)
    return "-" if not hit.numel() else f"{int(result.history.evaluations[hit[0, 0]]):,}"


def mnist(seeds: int) -> None:
    clf = fb.models.lenet_mnist()
    enc = fb.encodings.CPPNEncoding((1, 28, 28))
    print("MNIST, lenet_mnist, CPPN, batch 64: evaluations until 10/10 digits >= 99.99% (budget 150,000)")
    for name, kw in variants(False).items():
        t = time.perf_counter()
        evals = []
        for seed in range(seeds):
            res = fb.search.MAPElites(clf, enc, batch_size=64, seed=seed, **kw).run(
                max_evaluations=150_000, target_confidence=0.9999, progress=False
            )
            evals.append(res.evaluations if bool(res.fooled(0.9999).all()) else None)
        med = statistics.median([e if e is not None else float("inf") for e in evals])
        print(f"  {name:14s} per seed {evals}; median {med:,.0f}; {time.perf_counter() - t:.0f} s")


def imagenet(minutes: float, batch: int) -> None:
    clf = fb.models.efficientnet_lite0()
    enc = fb.encodings.CPPNEncoding((3, 224, 224))
    print(f"ImageNet CPU proxy: EfficientNet-Lite0 224x224, 10 texture classes, {minutes:g} min each, batch {batch}")
    print("  variant        | evaluations | median conf | >= 99% | median first >= 50% / 90% / 99% at")
    for name, kw in variants(True).items():
        kw = dict(kw)
        initial = None
        seconds = minutes * 60
        if kw.pop("warm", False):
            warm = fb.search.MAPElites(clf, enc, batch_size=batch, seed=0)
            warm.run(max_seconds=seconds / 4, progress=False)
            initial = warm.best_genomes()
            seconds *= 3 / 4
        search = fb.search.MAPElites(
            clf, enc, classes=IMAGENET_CLASSES, batch_size=batch, seed=0, initial=initial, **kw
        )
        res = search.run(max_seconds=seconds, progress=False)
        reach = " / ".join(first_reach(res, level) for level in (0.5, 0.9, 0.99))
        print(
            f"  {name:14s} | {res.evaluations:11,} | {100 * float(res.confidence.median()):10.2f}% | "
            f"{int(res.fooled(0.99).sum()):2d}/10  | {reach}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=("mnist", "imagenet", "all"), default="mnist")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 seed, 0.3 minutes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu")
    if args.task in ("mnist", "all"):
        mnist(1 if args.quick else args.seeds)
    if args.task in ("imagenet", "all"):
        imagenet(0.3 if args.quick else args.minutes, args.batch_size)


if __name__ == "__main__":
    main()
