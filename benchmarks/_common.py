"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


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


# The CPU proxy of the paper's ImageNet run: regular textures a pattern-producing network paints
# naturally (chosen before running; used by bench_cppn.py and bench_search_ablation.py).
TEXTURE_CLASSES = [599, 489, 904, 646, 611, 741, 815, 539, 556, 794]
