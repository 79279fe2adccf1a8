"""CPPN render speed: ``python benchmarks/bench_cppn_render.py [--n 256] [--device cpu|cuda]``.

Prints, measured side by side in one run, for 256 evolved genomes (30 rounds of mutation):

- on every device: the batched tensor path vs the same code one genome at a time in a Python loop,
  at 28x28x1 and 64x64x3 (and 224x224x3 on CUDA);
- on CUDA with Triton installed: also the fused Triton kernel (``backend="triton"``), its speed-up over
  the batched tensor path and over the one-by-one loop (issue 14 target: >= 100x the loop), and its
  largest difference from the tensor path (it must stay <= 1e-5).

On CPU the Triton kernel runs only in Triton's interpreter (a correctness tool, far slower than the
tensor path), so it is not timed there.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch

import foolbench as fb

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, grown_genomes


def bench_shape(shape: tuple[int, int, int], n: int, device: str, with_triton: bool) -> None:
    torch_enc = fb.encodings.CPPNEncoding(shape, backend="torch")
    g = grown_genomes(torch_enc, n).to(device)
    sync: Callable[[], None] = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def timed(fn: Callable[[], object], repeats: int) -> float:
        def call() -> None:
            fn()
            sync()

        return best_of(call, repeats=repeats)

    big = shape[1] * shape[2] >= 128 * 128
    t_batch = timed(lambda: torch_enc.render(g), 2 if big else 5)
    t_loop = timed(lambda: [torch_enc.render(g[i : i + 1]) for i in range(n)], 1)
    label = f"{n} genomes at {shape[1]}x{shape[2]}x{shape[0]} on {device}"
    nodes = f"mean {float(g.num_nodes().float().mean()):.1f} nodes, {float(g.num_connections().float().mean()):.1f} connections"
    print(
        f"{label} ({nodes}): tensor path batched {t_batch * 1e3:.1f} ms, one by one {t_loop * 1e3:.1f} ms "
        f"({t_loop / t_batch:.1f}x)"
    )
    if with_triton:
        fused = fb.encodings.CPPNEncoding(shape, backend="triton")
        diff = float((fused.render(g) - torch_enc.render(g)).abs().max())
        t_fused = timed(lambda: fused.render(g), 10)
        print(
            f"{label}: Triton batched {t_fused * 1e3:.2f} ms = {t_batch / t_fused:.1f}x the tensor path, "
            f"{t_loop / t_fused:.1f}x the one-by-one loop (target >= 100x); max |triton - tensor| {diff:.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=256, help="genomes rendered per batch")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda if present)",
    )
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(2)
    with_triton = args.device == "cuda" and importlib.util.find_spec("triton") is not None
    print(f"torch {torch.__version__}, {args.device}, threads {torch.get_num_threads()}, triton timed: {with_triton}")
    shapes = [(1, 28, 28), (3, 64, 64)] + ([(3, 224, 224)] if args.device == "cuda" else [])
    for shape in shapes:
        bench_shape(shape, args.n, args.device, with_triton)


if __name__ == "__main__":
    main()
