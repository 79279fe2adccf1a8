"""Whether ``compile=True`` lifts the bf16 forward toward issue 14's 15,000 evaluations/s, on a GPU.

``python tools/gpu_compile_probe.py [BATCH]`` (default 512): EfficientNet-Lite0 at 224x224 through the
adapter, bf16 + channels-last eager against the same with ``compile=True`` (``torch.compile`` of the
module), img/s of each measured side by side after the compile, and the compile's own seconds. The
1,000-class search spends most of a generation in this forward, so its rate bounds the search's.
"""

from __future__ import annotations

import sys
import time

import torch
from gpu_probe import cuda_ms  # tools/ is on the path when this script runs

import foolbench as fb


def main() -> None:
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    eager = fb.models.efficientnet_lite0(device="cuda", precision="bf16", batch_size=batch)
    compiled = eager.replace(compile=True)
    x = torch.rand(batch, 3, 224, 224, device="cuda")
    t0 = time.perf_counter()
    compiled.log_probs(x)
    torch.cuda.synchronize()
    print(f"{torch.cuda.get_device_name(0)}; torch {torch.__version__}; compile {time.perf_counter() - t0:.1f} s")
    for _ in range(2):  # alternated, twice
        t_eager = cuda_ms(lambda: eager.log_probs(x), reps=10)
        t_comp = cuda_ms(lambda: compiled.log_probs(x), reps=10)
        print(
            f"EfficientNet-Lite0 224x224 bf16, batch {batch}: eager {batch / t_eager * 1e3:,.0f} img/s, "
            f"compiled {batch / t_comp * 1e3:,.0f} img/s ({t_eager / t_comp:.2f}x)",
            flush=True,
        )
    diff = (eager.log_probs(x) - compiled.log_probs(x)).abs().max()
    print(f"max |log-prob difference| eager vs compiled: {float(diff):.4f}")


if __name__ == "__main__":
    main()
