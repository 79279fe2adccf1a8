"""Which search settings fool faster at equal budget: ``python benchmarks/bench_search_ablation.py``.

Each variant changes one switch of the default MAP-Elites + CPPN search (parents ``unmet-first``,
mutation strength 1); all run side by side in one process, each with the same evaluation budget (so
a loaded machine changes the wall time, never the result):

- ``--task mnist``: evaluations until all 10 lenet_mnist digits reach 99.99% (CPPN, batch 64),
  median over ``--seeds`` seeds, with a budget of 150,000 evaluations per run.
- ``--task imagenet``: the CPU proxy of the paper's ImageNet run: EfficientNet-Lite0 at 224x224, the
  10 texture classes of ``bench_cppn.py``, ``--evaluations`` per variant (default 16,000: 10 minutes
  on the 2-core CPU), batch 16: median confidence, classes >= 99%, and the evaluations at which the
  median first reached 50/90/95/99% (evaluations-to-threshold).

Variants: ``baseline`` (unmet-first, strength 1), ``uniform`` parents (the paper), ``curiosity``
parents, ``weakest`` parents (rank weights favouring the least-fooled classes), mutation ``strength``
0.5 and 2 (CPPN operator rates and weight steps), ``cycle`` (strengths 0.5/1/2 in turn: several
emitters of different strengths), and for ImageNet ``warm-start`` (the first quarter of the budget on
all 1,000 classes, then the 10 classes seeded with that warm-up's elites) and ``focus 0.5`` (all
1,000 classes in the archive as stepping stones, half the parents from the 10: ``fb.search.Focus``),
``warm + str. 2`` (the warm start with mutation strength 2 in both phases) and ``warm + focus`` (the
same warm-up, then the same search goes on with all 1,000 classes in the archive and three quarters
of the parents from the 10), ``ramp 2 -> 0.5`` (``fb.search.RampStrength``: strength 2 falling
geometrically to 0.5 over the run) and ``warm + ramp`` (the warm-up at strength 2, then the ramp over
the focused search), ``crossover 0.25`` (a quarter of the children bred from two elites before
mutation: ``MAPElites(crossover=0.25)``) and ``warm + cross.`` (the warm start, then crossover 0.25),
and ``bf16`` (the baseline searching with bfloat16 scores, ``efficientnet_lite0(precision="bf16")``: its
elites are re-scored by the float32 model, so its final confidences compare with the others; its
"first >= x%" columns and curve are its own bf16 scores), and ``bf16 + verify`` (``MAPElites(verify=True)``:
bf16 screens every child, the float32 model re-scores those that beat an elite before they compete), and
``random`` (no evolution: :class:`~foolbench.search.RandomSearch` samples fresh random CPPN genomes at the
same budget and keeps each class's best), and ``bf16 + verify + str. 2`` (mutation strength 2 with
``bf16 + verify``: the setting measured over ten seeds with ``--evaluations 40000``, about what fits in
the proxy's 10 minutes at bf16 speed; see docs/methods/evolution.md), ``bf16 + verify + str. 2 + unmet 99%``
(parents from the classes below the proxy's 99% aim: ``UnmetFirst(confidence=0.99)``), the same at
``str. 3``, and ``... + nearest 99%`` (``NearestFirst`` below: among the classes under 99%, the ones
nearest to it give the most parents), and ``... + unmet 99% + gentle 90%`` (the children of elites already
>= 90% mutated at strength 1, the others at 2: ``fb.search.NearStrength(2.0, near_confidence=0.9)``), and
``str. 2 + unmet 99% + refine 98%`` (float32; the children of elites already >= 98% refined, only some CPPN
weights moved by small steps: ``fb.search.NearStrength(2.0, near_confidence=0.98, refine=0.02)``).

``--out FILE.json`` keeps every variant's curve (evaluations, median and per-class confidence per
generation) for plotting; ``--only NAME ...`` runs some variants.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import foolbench as fb
from foolbench.search._operators import rank_weights, unmet_pool, weighted_draw

sys.path.insert(0, str(Path(__file__).parent))
from _common import TEXTURE_CLASSES, machine

LEVELS = (0.5, 0.9, 0.95, 0.99)


class NearestFirst(fb.search.UnmetFirst):
    """Parents mostly from the unmet niches nearest to ``confidence``: ``Weakest``'s rank weights reversed.

    A benchmark-only selector (not in the library unless the numbers support it): among the niches
    still below ``confidence`` the strongest gets weight ``k``, the next ``k - 1``, ..., the weakest 1.
    """

    def __call__(
        self, fitness: torch.Tensor, occupied: torch.Tensor, n: int, generator: torch.Generator
    ) -> torch.Tensor:
        pool = unmet_pool(fitness, occupied, math.log(self.confidence))
        return weighted_draw(rank_weights(-fitness.float(), pool), n, generator)

    def config(self) -> dict[str, Any]:
        return {"name": "nearest-first", "confidence": self.confidence}

    def __repr__(self) -> str:
        return f"NearestFirst(confidence={self.confidence:g})"


def variants(include_warm: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        "baseline": {},
        "uniform": {"parents": "uniform"},
        "weakest": {"parents": "weakest"},
        "curiosity": {"parents": "curiosity"},
        "cycle 0.5/1/2": {"mutation_schedule": fb.search.CycleStrength((0.5, 1.0, 2.0))},
    }
    if include_warm:
        out["warm-start"] = {"warm": True}
        out["focus 0.5"] = {"focus": 0.5}
        out["warm + str. 2"] = {"warm": True, "mutation_schedule": 2.0}
        out["warm + focus"] = {"warm": True, "focus": 0.75}
        out["warm + ramp"] = {"warm": True, "ramp": True}
        out["warm + cross."] = {"warm": True, "crossover": 0.25}
        out["bf16"] = {"precision": "bf16"}
        out["bf16 + verify"] = {"precision": "bf16", "verify": True}
        out["bf16 + verify + str. 2"] = {"precision": "bf16", "verify": True, "mutation_schedule": 2.0}
        # the same, parents only from the classes still below the proxy's 99% aim (UnmetFirst's default is 99.99%)
        out["bf16 + verify + str. 2 + unmet 99%"] = {
            "precision": "bf16",
            "verify": True,
            "mutation_schedule": 2.0,
            "parents": fb.search.UnmetFirst(confidence=0.99),
        }
        # the same with mutation strength 3: does the gain from 1 to 2 go on?
        out["bf16 + verify + str. 3 + unmet 99%"] = {
            "precision": "bf16",
            "verify": True,
            "mutation_schedule": 3.0,
            "parents": fb.search.UnmetFirst(confidence=0.99),
        }
        # the same as "str. 2 + unmet 99%", the parents mostly from the unmet classes nearest to 99%
        out["bf16 + verify + str. 2 + nearest 99%"] = {
            "precision": "bf16",
            "verify": True,
            "mutation_schedule": 2.0,
            "parents": NearestFirst(confidence=0.99),
        }
        # the same as "str. 2 + unmet 99%", children of elites already >= 90% mutated at strength 1
        # (fb.search.NearStrength)
        out["bf16 + verify + str. 2 + unmet 99% + gentle 90%"] = {
            "precision": "bf16",
            "verify": True,
            "mutation_schedule": fb.search.NearStrength(2.0, near_confidence=0.9, near_strength=1.0),
            "parents": fb.search.UnmetFirst(confidence=0.99),
        }
        # float32 (the faster choice without bf16 units), children of elites already >= 98% refined: only some
        # weights moved, by 0.02 of a mutation's step (NearStrength(refine=); bench_cppn.py --near-refine)
        out["str. 2 + unmet 99% + refine 98%"] = {
            "mutation_schedule": fb.search.NearStrength(2.0, near_confidence=0.98, refine=0.02),
            "parents": fb.search.UnmetFirst(confidence=0.99),
        }
        out["random"] = {"random": True}  # no evolution: fresh random genomes at the same budget
    out["ramp 2 -> 0.5"] = {"ramp": True}
    out["crossover 0.25"] = {"crossover": 0.25}
    out["strength 2"] = {"mutation_schedule": 2.0}
    out["strength 0.5"] = {"mutation_schedule": 0.5}
    return out


def ramp(evaluations: int, batch: int) -> fb.search.RampStrength:
    """The ``ramp`` variants' schedule: strength 2 falling to 0.5 over a budget's generations."""
    return fb.search.RampStrength(start=2.0, end=0.5, generations=evaluations // batch)


def first_reach(evaluations: torch.Tensor, confidence: torch.Tensor, level: float) -> str:
    """Evaluations at which the median class (confidence: generations x classes) first reached ``level``."""
    hit = torch.nonzero(confidence.median(dim=1).values >= level)
    return "-" if not hit.numel() else f"{int(evaluations[hit[0, 0]]):,}"


def mnist(seeds: int, only: list[str] | None) -> dict[str, Any]:
    clf = fb.models.lenet_mnist()
    enc = fb.encodings.CPPNEncoding((1, 28, 28))
    print("MNIST, lenet_mnist, CPPN, batch 64: evaluations until 10/10 digits >= 99.99% (budget 150,000)")
    out: dict[str, Any] = {}
    for name, kw in variants(False).items():
        if only and name not in only:
            continue
        t = time.perf_counter()
        evals, lowest = [], []
        kw = dict(kw)
        if kw.pop("ramp", False):
            kw["mutation_schedule"] = ramp(150_000, 64)
        for seed in range(seeds):
            res = fb.search.MAPElites(clf, enc, batch_size=64, seed=seed, **kw).run(
                max_evaluations=150_000, target_confidence=0.9999, progress=False
            )
            evals.append(res.evaluations if bool(res.fooled(0.9999).all()) else None)
            lowest.append(round(100 * float(res.confidence.min()), 4))
        med = statistics.median([e if e is not None else float("inf") for e in evals])
        print(
            f"  {name:14s} per seed {evals} (lowest digit {lowest}%); median {med:,.0f}; "
            f"{time.perf_counter() - t:.0f} s",
            flush=True,
        )
        out[name] = {"evaluations_to_target": evals, "lowest_confidence_percent": lowest}
    return out


def imagenet(
    evaluations: int,
    batch: int,
    seed: int,
    only: list[str] | None,
    out: dict[str, Any],
    save: Callable[[], None],
) -> None:
    """Run the variants, filling ``out`` with each curve and calling ``save`` after each."""
    clf = fb.models.efficientnet_lite0()
    enc = fb.encodings.CPPNEncoding((3, 224, 224))
    print(
        f"ImageNet CPU proxy: EfficientNet-Lite0 224x224, 10 texture classes, {evaluations:,} evaluations "
        f"per variant, batch {batch}, seed {seed}"
    )
    head = " / ".join(f"{100 * lv:g}%" for lv in LEVELS)
    print(f"  variant        | evaluations | median conf | >= 99% | time  | median first >= {head} at")
    for name, kw in variants(True).items():
        if only and name not in only:
            continue
        kw = dict(kw)
        model = fb.models.efficientnet_lite0(precision=kw.pop("precision")) if "precision" in kw else clf
        initial, budget, offset = None, evaluations, 0
        t = time.perf_counter()
        classes: list[int] | None = TEXTURE_CLASSES
        share = kw.pop("focus", None)
        search: fb.search.MAPElites | None = None
        ramped = kw.pop("ramp", False)
        if kw.pop("warm", False):
            schedule = 2.0 if ramped else kw.get("mutation_schedule")
            warm = fb.search.MAPElites(model, enc, batch_size=batch, seed=seed, mutation_schedule=schedule)
            offset = warm.run(max_evaluations=evaluations // 4, progress=False).evaluations
            if share is not None:  # the same search goes on, its parents now mostly from the 10
                warm.parents, search, classes, offset = fb.search.Focus(TEXTURE_CLASSES, share=share), warm, None, 0
            else:
                initial, budget = warm.best_genomes()[TEXTURE_CLASSES], evaluations - offset
        elif share is not None:  # every class in the archive (stepping stones), a share of the parents from the 10
            classes, kw["parents"] = None, fb.search.Focus(TEXTURE_CLASSES, share=share)
        if ramped:  # over the (focused) search's generations
            kw["mutation_schedule"] = ramp(budget, batch)
        if kw.pop("random", False):
            search = fb.search.RandomSearch(model, enc, classes=classes, batch_size=batch, seed=seed)
        if search is None:
            search = fb.search.MAPElites(
                model, enc, classes=classes, batch_size=batch, seed=seed, initial=initial, **kw
            )
        res = search.run(max_evaluations=budget, progress=False)
        seconds = time.perf_counter() - t
        curve, final = res.history.confidence, res.confidence
        if classes is None:
            curve, final = curve[:, TEXTURE_CLASSES], final[TEXTURE_CLASSES]
        evals = res.history.evaluations + offset
        reach = " / ".join(first_reach(evals, curve, level) for level in LEVELS)
        checked = f" (+{search.verifications:,} float32 checks)" if search.verifications else ""
        print(
            f"  {name:14s} | {offset + res.evaluations:11,} | {100 * float(final.median()):10.2f}% | "
            f"{int((final >= 0.99).sum()):2d}/10  | {seconds:4.0f}s | {reach}{checked}",
            flush=True,
        )
        out[name] = {
            "evaluations": evals.tolist(),
            "confidence": curve.tolist(),
            "final": final.tolist(),
            "seconds": seconds,
            "verifications": search.verifications,
        }
        save()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=("mnist", "imagenet", "all"), default="mnist")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--evaluations", type=int, default=16_000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="ImageNet runs: the search seed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="run only these variants (names as printed)")
    parser.add_argument("--out", type=Path, help="write the curves to this JSON file")
    parser.add_argument("--quick", action="store_true", help="1 seed, 160 ImageNet evaluations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fb.tune_malloc()  # keep freed tensor memory: no page faults per generation
    print(machine())
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "bf16_units": fb.models.native_bf16("cpu"),
    }
    if args.task in ("mnist", "all"):
        out["mnist"] = mnist(1 if args.quick else args.seeds, args.only)

    def save() -> None:
        if args.out:
            args.out.write_text(json.dumps(out))

    if args.task in ("imagenet", "all"):
        out["imagenet_classes"] = TEXTURE_CLASSES
        out["imagenet"] = {}
        out["imagenet_seed"] = args.seed
        evaluations = 160 if args.quick else args.evaluations
        imagenet(evaluations, args.batch_size, args.seed, args.only, out["imagenet"], save)
    save()


if __name__ == "__main__":
    main()
