"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import torch

import foolbench as fb


def best_of(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Smallest wall time in seconds of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def grown_genomes(enc: fb.encodings.CPPNEncoding, n: int, rounds: int = 30) -> fb.encodings.CPPNGenomes:
    """``n`` CPPN genomes mutated ``rounds`` times from seeded random ones: the structure of a search's elites."""
    g = enc.sample(n, torch.Generator().manual_seed(0))
    rng = torch.Generator().manual_seed(1)
    for _ in range(rounds):
        g = enc.mutate(g, rng)
    return g


def take_turns(
    searches: Mapping[str, fb.search.Evolution],
    until: float,
    *,
    after_slice: Callable[[str, fb.search.Evolution], None] | None = None,
) -> None:
    """Run searches in turns of 30 s of their own search time until each has ``until`` seconds.

    A change of machine load then hits all of them alike. A search stops early once it reached its
    99% target (a slice that runs no generation); ``after_slice(name, search)`` is called after each.
    """
    done: set[str] = set()
    while len(done) < len(searches):
        for name, search in searches.items():
            if name in done:
                continue
            before = search.generation
            search.run(max_seconds=min(until, search.seconds + 30), target_confidence=0.99, progress=False)
            if after_slice is not None:
                after_slice(name, search)
            if search.seconds >= until or search.generation == before:  # time spent, or the target reached
                done.add(name)


def machine(device: str = "cpu") -> str:
    """The header line that labels a benchmark's figures: torch, threads, device, bfloat16 units.

    Whether the device has bf16 units (:func:`foolbench.models.native_bf16`) decides whether bf16
    figures are fast or emulated (on a 2-core Xeon without them bf16 ran at 0.6x float32).
    """
    where = torch.cuda.get_device_name(torch.device(device)) if torch.device(device).type == "cuda" else device
    units = "yes" if fb.models.native_bf16(device) else "no (emulated: slower than fp32)"
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}, bf16 units: {units}"


# The CPU proxy of the paper's ImageNet run: regular textures a pattern-producing network paints
# naturally (chosen before running; used by bench_cppn.py and bench_search_ablation.py).
TEXTURE_CLASSES = [599, 489, 904, 646, 611, 741, 815, 539, 556, 794]
