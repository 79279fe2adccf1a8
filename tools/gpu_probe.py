"""Second, short GPU check (issue 14): the fused render's tuning sweep, the verified search after the fix,
and where the direct loop's time goes. ``python tools/gpu_probe.py`` on a CUDA machine (about 90 s)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import foolbench as fb
from foolbench.encodings import _cppn_triton

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_gpu


def cuda_ms(fn, reps: int = 20) -> float:  # type: ignore[no-untyped-def]
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / reps)
    return best


def render_sweep() -> None:
    enc = fb.encodings.CPPNEncoding((3, 224, 224))
    g = bench_gpu.grown(enc, 256, "cuda")
    grid = enc._grid(224, 224, g.device, g.weight.dtype)
    w, act, sizes = enc._ordered(g, all_slots=True)
    codes = torch.tensor([_cppn_triton.ACTIVATION_CODES[a] for a in enc.activations], device="cuda")[act]
    print(
        f"render 256 genomes ({float(g.num_nodes().float().mean()):.1f} nodes) 224x224x3, w {tuple(w.shape)}: "
        f"whole render {cuda_ms(lambda: enc.render(g)):.3f} ms, _ordered {cuda_ms(lambda: enc._ordered(g, all_slots=True)):.3f} ms",
        flush=True,
    )
    rows = []

    def kernel(bp: int, nw: int) -> None:
        try:
            ms = cuda_ms(lambda: _cppn_triton.render(grid, w, codes, sizes, 3, block_p=bp, num_warps=nw))
            rows.append((ms, bp, nw))
        except Exception as exc:  # noqa: BLE001
            print(f"block_p {bp} num_warps {nw}: {type(exc).__name__}: {str(exc)[:120]}")

    for bp in (64, 128, 256, 512):
        for nw in (1, 2, 4, 8):
            kernel(bp, nw)
    for ms, bp, nw in sorted(rows)[:16]:
        print(f"kernel block_p {bp:4d} num_warps {nw}: {ms:.3f} ms", flush=True)


def direct_profile() -> None:
    clf = fb.models.lenet_mnist(device="cuda")
    search = fb.search.MAPElites(clf, fb.search.MNIST_RECIPE.encoding((1, 28, 28)), batch_size=1024, seed=0)
    search.run(generations=20, progress=False)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    search.run(generations=220, progress=False)
    torch.cuda.synchronize()
    print(f"direct loop batch 1,024: {(time.perf_counter() - t0) / 200 * 1e3:.3f} ms per generation", flush=True)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        search.run(generations=240, progress=False)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=40))


if __name__ == "__main__":
    print(f"{torch.cuda.get_device_name(0)}; torch {torch.__version__}", flush=True)
    for name, fn in [
        ("render sweep", render_sweep),
        ("bf16", lambda: bench_gpu.imagenet_search_row("cuda", batch=512, size=224, seconds=10)),
        ("bf16 verify", lambda: bench_gpu.imagenet_search_row("cuda", batch=512, size=224, seconds=10, verify=True)),
        ("direct profile", direct_profile),
    ]:
        bench_gpu.guarded(name, fn)
