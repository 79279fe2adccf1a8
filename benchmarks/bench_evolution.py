"""MAP-Elites on lenet_mnist: ``python benchmarks/bench_evolution.py [--quick]``.

Prints, side by side in one run:
- evaluations until all 10 digits reach 99.99%, for 5 seeds (median; target <= 30,000), with the
  tuned recipe (batch 64, mutation rate 0.02, eta 1) and with the paper's settings (rate 0.1, eta 15);
- search overhead: evaluations/s of the whole loop (ask, mutate, render, evaluate, tell) divided by
  evaluations/s of the bare batched forward of the same module on the same batch size (target >= 0.90).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import foolbench as fb

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of


def evaluations_to_all(
    clf: fb.models.TorchClassifier, seeds: int, budget: int, *, batch_size: int, rate: float, eta: float
) -> list[int | None]:
    out: list[int | None] = []
    for seed in range(seeds):
        enc = fb.encodings.DirectEncoding((1, 28, 28), mutation_rate=rate, eta=eta)
        res = fb.search.MAPElites(clf, enc, batch_size=batch_size, seed=seed).run(
            max_evaluations=budget, target_confidence=0.9999, progress=False
        )
        out.append(res.evaluations if bool(res.fooled(0.9999).all()) else None)
    return out


def overhead(clf: fb.models.TorchClassifier, batch_size: int, generations: int) -> tuple[float, float]:
    module = clf.module
    x = torch.rand(batch_size, 1, 28, 28)

    def bare() -> None:
        with torch.no_grad():
            for _ in range(generations):
                torch.log_softmax(module(clf.preprocess(x)), 1)

    t_bare = best_of(bare, repeats=3)
    enc = fb.encodings.DirectEncoding((1, 28, 28), mutation_rate=0.02, eta=1.0)

    def loop() -> None:
        fb.search.MAPElites(clf, enc, batch_size=batch_size, seed=0).run(generations=generations, progress=False)

    t_loop = best_of(loop, repeats=3)
    n = batch_size * generations
    return n / t_bare, n / t_loop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    clf = fb.models.lenet_mnist()
    seeds = 2 if args.quick else 5
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu")
    for name, kw, budget in [
        ("tuned recipe (batch 64, rate 0.02, eta 1)", {"batch_size": 64, "rate": 0.02, "eta": 1.0}, 100_000),
        ("paper settings (batch 256, rate 0.1, eta 15)", {"batch_size": 256, "rate": 0.1, "eta": 15.0}, 200_000),
    ]:
        t = time.perf_counter()
        evals = evaluations_to_all(clf, seeds, budget, **kw)  # type: ignore[arg-type]
        done = [e for e in evals if e is not None]
        med = statistics.median([e if e is not None else float("inf") for e in evals])
        print(
            f"{name}: evaluations to 10/10 digits at >= 99.99% per seed {evals}; median {med:,.0f} "
            f"({len(done)}/{seeds} seeds within {budget:,}); {time.perf_counter() - t:.1f} s"
        )
    for bs in (64, 256):
        bare, loop = overhead(clf, bs, 20 if args.quick else 100)
        print(
            f"overhead at batch {bs}: bare forward {bare:,.0f} eval/s, MAP-Elites loop {loop:,.0f} eval/s, "
            f"ratio {loop / bare:.3f} (target >= 0.90)"
        )


if __name__ == "__main__":
    main()
