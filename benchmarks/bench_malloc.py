"""glibc's allocator, default vs ``fb.tune_malloc()``: ``python benchmarks/bench_malloc.py``.

Runs the same MAP-Elites + CPPN search on EfficientNet-Lite0 (the 10 texture classes, batch 16) in
fresh processes, default and tuned, alternated twice: evaluations/s over 800 evaluations after a
3,200-evaluation start, and minor page faults per evaluation.
"""

from __future__ import annotations

import subprocess
import sys

_RUN = """
import resource, sys, time, torch, foolbench as fb
sys.path.insert(0, "benchmarks")
from _common import TEXTURE_CLASSES
torch.set_num_threads(2)
if sys.argv[1] == "tuned":
    fb.tune_malloc()
search = fb.search.MAPElites(fb.models.efficientnet_lite0(), fb.encodings.CPPNEncoding((3, 224, 224)),
                             classes=TEXTURE_CLASSES, batch_size=16, seed=0)
search.run(max_evaluations=3200, progress=False)
before, n, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, search.evaluations, time.perf_counter()
search.run(max_evaluations=n + 800, progress=False)
done = search.evaluations - n
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(done / (time.perf_counter() - start), faults / done)
"""


def main() -> None:
    rates: dict[str, list[float]] = {"default": [], "tuned": []}
    for _ in range(2):
        for mode, seen in rates.items():
            out = subprocess.run([sys.executable, "-c", _RUN, mode], capture_output=True, text=True, check=True)
            rate, faults = map(float, out.stdout.split())
            seen.append(rate)
            print(f"{mode:8s}: {rate:.1f} evaluations/s, {faults:,.0f} page faults per evaluation", flush=True)
    best = {mode: max(r) for mode, r in rates.items()}
    print(f"tuned / default: {best['tuned'] / best['default']:.2f}x")


if __name__ == "__main__":
    main()
