"""The polish's step size near the aim: ``python benchmarks/bench_polish_lr.py [--lr 0.0005 0.001 0.002 0.005 0.01]``.

A MAP-Elites + CPPN search against EfficientNet-Lite0 (float32, compiled; the 10 texture classes of the
CPU proxy) runs for ``--base-minutes`` with strength 2, parents below 99% first and
``GradientPolish(every=200, steps=30, lr=0.01, above=0.9, below=0.99)`` (the polish's first defaults); its
state is saved to ``--state`` (and loaded from there when the file exists, so the sweep can be rerun on
the same archive). Then the elites between ``--above`` and 99% are polished from that same start with
each ``--lr`` for ``--steps`` Adam steps by :class:`foolbench.search.GradientPolish` itself (float32
reference model, the best genes kept; ``trace=`` records every step), and the script prints per elite the start, the best confidence,
the step it was reached at, the confidence after 15 and 30 steps, the time per step size, and the
compiled model's score of the kept genes (what the search would see).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

import foolbench as fb

sys.path.insert(0, str(Path(__file__).parent))
from _common import TEXTURE_CLASSES, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lr", type=float, nargs="+", default=[0.0005, 0.001, 0.002, 0.005, 0.01])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--above", type=float, default=0.5, help="polish the elites from this confidence to 99%%")
    parser.add_argument("--base-minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--state", type=Path, default=Path("bench_polish_lr_state.pt"))
    args = parser.parse_args()
    if args.steps < 1 or not 0 <= args.above < 0.99 or min(args.lr) <= 0:
        parser.error("--steps must be >= 1, --above in [0, 0.99), every --lr > 0")
    print(machine())
    clf = fb.models.efficientnet_lite0().replace(compile=True)
    enc = fb.encodings.CPPNEncoding((3, 224, 224))
    search = fb.search.MAPElites(
        clf,
        enc,
        classes=TEXTURE_CLASSES,
        batch_size=16,
        seed=args.seed,
        mutation_schedule=2.0,
        parents=fb.search.UnmetFirst(confidence=0.99),
        polish=fb.search.GradientPolish(every=200, steps=30, lr=0.01, above=0.9, below=0.99),
    )
    if args.state.exists():
        search.load_state_dict(torch.load(args.state, weights_only=False))
        print(f"archive from {args.state}: {search.evaluations:,} evaluations")
    else:
        search.run(max_seconds=60 * args.base_minutes, target_confidence=0.99, progress=False)
        torch.save(search.state_dict(), args.state)
        print(f"archive after {search.seconds:.0f} s: {search.evaluations:,} evaluations (saved to {args.state})")
    fitness = search.archive.fitness
    picked = ((fitness < math.log(0.99)) & (fitness.exp() >= args.above)).nonzero().flatten()
    if picked.numel() == 0:
        print("no elite in that range")
        return
    assert search.archive.genomes is not None
    genomes, classes = search.archive.genomes[picked], search.archive.classes[picked]
    print(f"elites (classes {classes.tolist()}): {[round(float(c), 4) for c in fitness[picked].exp()]}")
    model, rows, bounds = clf.reference(), torch.arange(len(picked)), (float(clf.bounds[0]), float(clf.bounds[1]))
    for lr in args.lr:
        t = time.perf_counter()
        seen: list[torch.Tensor] = []
        polish = fb.search.GradientPolish(steps=args.steps, lr=lr)
        polished, best = polish(model, enc, genomes, classes, bounds=bounds, trace=seen)
        seconds = time.perf_counter() - t
        scored = clf.log_probs(search.images(polished))[rows, classes].exp()
        trace = torch.stack(seen).exp()

        def fmt(values: torch.Tensor) -> str:
            return " ".join(f"{float(v):.4f}" for v in values)

        print(f"lr {lr:g}, {args.steps} steps: {seconds:.0f} s")
        print(f"  start      {fmt(trace[0])}")
        print(f"  best       {fmt(best.exp())}  (compiled model: {fmt(scored)})")
        print(f"  best step  {' '.join(f'{int(s):6d}' for s in trace.argmax(0))}")
        print(f"  step 15    {fmt(trace[min(14, args.steps - 1)])}")
        print(f"  step 30    {fmt(trace[min(29, args.steps - 1)])}")
        print(f"  elites better than at the start: {int((best > trace[0].log() + 1e-6).sum())} of {len(picked)}")


if __name__ == "__main__":
    main()
