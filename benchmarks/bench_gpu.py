"""Every row of the CUDA fast-path table in one run: ``python benchmarks/bench_gpu.py [--quick]``.

On a CUDA machine (the figures issue 14 asks for; about 5 minutes on one H100/H200):

1. EfficientNet-Lite0 224x224, batch 256: the adapter's ``log_probs`` vs the bare module (fp32), img/s;
2. the same in bf16 + channels_last: ``TorchClassifier(precision="bf16", channels_last=True)`` vs the
   bare module under autocast; then the bf16 adapter on 512 images in chunks of 128, 256 and 512;
3. CPPN render of 256 evolved genomes at 224x224x3: batched (Triton kernel on CUDA) vs one genome at a
   time, and render time / EfficientNet fp32 forward time of the same 256 images;
4. MAP-Elites + CPPN over all 1,000 ImageNet classes, batch 512, bf16: evaluations/s and the time the
   paper's budget (2M evaluations) takes at that rate; host synchronisations per generation;
5. MAP-Elites + direct encoding on lenet_mnist: whole loop / bare forward at batch 1,024 and 8,192;
6. PGD L-inf eps 0.3, 40 steps, 1,000 digits: foolbench vs a bare hand-written loop (and torchattacks
   when it is installed).

``--quick`` runs every row small on the CPU in under a minute (a smoke test of the script, not figures
to report). The first line names the device, torch and CUDA versions.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

import foolbench as fb

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, grown_genomes


def make_sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def timed(fn: Callable[[], object], device: str, repeats: int) -> float:
    sync = make_sync(device)

    def call() -> None:
        fn()
        sync()

    return best_of(call, repeats=repeats)


def effnet_rows(device: str, batch: int, size: int) -> float:
    clf = fb.models.efficientnet_lite0(device=device, image_size=size)
    x = torch.rand(batch, 3, size, size, device=device)
    module, pre = clf.network(), clf.preprocess
    reps = 3 if device == "cpu" else 10

    def bare() -> None:  # in the adapter's chunks (on a GPU the whole batch; on a CPU, cache-sized ones)
        with torch.no_grad():
            for chunk in torch.split(x, clf.batch_size):
                torch.log_softmax(module(pre(chunk)).float(), 1)

    t_bare = timed(bare, device, reps)
    t_adapter = timed(lambda: clf.log_probs(x), device, reps)
    print(
        f"EfficientNet-Lite0 {size}x{size}, batch {batch}, fp32 channels_last: adapter {batch / t_adapter:,.0f} img/s, "
        f"bare module {batch / t_bare:,.0f} img/s, ratio {t_bare / t_adapter:.3f} (target >= 0.95)"
    )
    if device == "cuda":
        fast = clf.replace(precision="bf16")
        xl = x.contiguous(memory_format=torch.channels_last)

        def bare_bf16() -> None:
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                torch.log_softmax(module(pre(xl)).float(), 1)

        t_fast_bare = timed(bare_bf16, device, reps)
        t_fast = timed(lambda: fast.log_probs(x), device, reps)
        print(
            f"EfficientNet-Lite0 bf16 + channels_last: adapter {batch / t_fast:,.0f} img/s, bare module "
            f"{batch / t_fast_bare:,.0f} img/s, ratio {t_fast_bare / t_fast:.3f}; "
            f"{t_adapter / t_fast:.2f}x the fp32 adapter"
        )

    return t_bare


def chunk_row(device: str, images: int, size: int) -> None:
    """The bf16 adapter by chunk size (the GPU default is 256): whether larger chunks feed the card better."""
    fast = fb.models.efficientnet_lite0(device=device, image_size=size, precision="bf16")
    x = torch.rand(images, 3, size, size, device=device)
    rates = []
    for chunk in (128, 256, 512):
        sized = fast.replace(batch_size=chunk)
        rates.append(f"{chunk}: {images / timed(lambda sized=sized: sized.log_probs(x), device, 10):,.0f}")
    print(f"EfficientNet-Lite0 bf16 adapter, {images} images by chunk size: {', '.join(rates)} img/s")


def render_rows(device: str, n: int, size: int, t_forward: float, forward_batch: int) -> None:
    enc = fb.encodings.CPPNEncoding((3, size, size))  # backend "auto": the Triton kernel on CUDA
    g = grown_genomes(enc, n).to(device)
    t_batch = timed(lambda: enc.render(g), device, 5)
    t_loop = timed(lambda: [enc.render(g[i : i + 1]) for i in range(n)], device, 1)
    nodes = float(g.num_nodes().float().mean())
    per_forward = t_forward * n / forward_batch
    print(
        f"CPPN render, {n} genomes ({nodes:.1f} nodes) at {size}x{size}x3 on {device} ({enc.backend}): "
        f"batched {t_batch * 1e3:.1f} ms, one by one {t_loop * 1e3:.0f} ms = {t_loop / t_batch:.1f}x (target >= 100x); "
        f"render / EfficientNet fp32 forward of the same images {t_batch / per_forward:.2f} (target <= 0.10)"
    )


def count_syncs(search: fb.search.MAPElites, generations: int) -> float:
    """Host synchronisations per generation (CUDA only): warnings raised in sync-debug 'warn' mode.

    Only the "called a synchronizing CUDA operation" warnings count (torch also warns, once, that the
    mode is a prototype).
    """
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.cuda.set_sync_debug_mode("warn")
            for _ in range(generations):
                search._step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchronizing" in str(w.message) and "prototype" not in str(w.message)]
    return len(syncs) / generations


def imagenet_search_row(device: str, batch: int, size: int, seconds: float, verify: bool = False) -> None:
    precision = "bf16" if device == "cuda" else "fp32"
    clf = fb.models.efficientnet_lite0(device=device, image_size=size, precision=precision)  # channels-last
    enc = fb.encodings.CPPNEncoding((3, size, size))
    search = fb.search.MAPElites(clf, enc, batch_size=batch, seed=0, verify=verify)
    search.step()  # generation 0 (and compile / autotune warm-up) outside the timing
    syncs = count_syncs(search, 3) if device == "cuda" else float("nan")
    make_sync(device)()
    start, evals = time.perf_counter(), search.evaluations
    search.run(max_seconds=search.seconds + seconds, progress=False)
    make_sync(device)()
    rate = (search.evaluations - evals) / (time.perf_counter() - start)
    res = search.result()
    print(
        f"MAP-Elites + CPPN, all {clf.num_classes} classes, batch {batch}, {size}x{size}, {precision}"
        f"{f' + verify ({search.verifications:,} float32 checks)' if verify else ''}: "
        f"{rate:,.0f} evaluations/s; 2M evaluations would take {2e6 / rate / 60:.1f} min; median confidence "
        f"{100 * float(res.confidence.median()):.2f}% after {res.evaluations:,}; host syncs per generation {syncs:g}"
    )


def direct_rows(device: str, batches: tuple[int, ...], generations: int) -> None:
    clf = fb.models.lenet_mnist(device=device)
    module, pre = clf.network(), clf.preprocess
    enc = fb.search.MNIST_RECIPE.encoding((1, 28, 28))
    for b in batches:
        x = torch.rand(b, 1, 28, 28, device=device)

        def bare(x: torch.Tensor = x) -> None:
            with torch.no_grad():
                for _ in range(generations):
                    torch.log_softmax(module(pre(x)), 1)

        def loop(b: int = b) -> None:
            fb.search.MAPElites(clf, enc, batch_size=b, seed=0).run(generations=generations, progress=False)

        t_bare, t_loop = timed(bare, device, 3), timed(loop, device, 3)
        print(
            f"MAP-Elites + direct, lenet_mnist, batch {b:,}: loop {b * generations / t_loop:,.0f} eval/s, "
            f"bare forward {b * generations / t_bare:,.0f} eval/s, ratio {t_bare / t_loop:.2f}"
        )


def bare_pgd(clf: fb.models.BaseClassifier, x: torch.Tensor, y: torch.Tensor, steps: int) -> torch.Tensor:
    eps, alpha = 0.3, 0.01
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(clf.network()(clf.preprocess(adv)), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = (x + (adv.detach() + alpha * grad.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    return adv


def pgd_row(device: str, n: int, steps: int) -> None:
    clf = fb.models.lenet_mnist(device=device)
    x, y = fb.data.mnist_digits("test", limit=n)
    x, y = x.to(device), y.to(device)
    attack = fb.search.PGD(eps=0.3, steps=steps, random_start=False)
    t_ours = timed(lambda: attack(clf, x, y), device, 5)
    t_bare = timed(lambda: bare_pgd(clf, x, y, steps), device, 5)
    line = (
        f"PGD L-inf eps 0.3, {steps} steps, {n} digits: foolbench {t_ours * 1e3:.1f} ms, bare loop "
        f"{t_bare * 1e3:.1f} ms, ratio {t_ours / t_bare:.2f}"
    )
    if importlib.util.find_spec("torchattacks") is not None:
        import torchattacks

        class Net(torch.nn.Module):
            def forward(self, t: torch.Tensor) -> torch.Tensor:
                return clf.network()(clf.preprocess(t))

        ta = torchattacks.PGD(Net().eval(), eps=0.3, alpha=0.01, steps=steps, random_start=False)
        t_ta = timed(lambda: ta(x, y), device, 5)
        line += f"; torchattacks {t_ta * 1e3:.1f} ms, foolbench / torchattacks {t_ours / t_ta:.2f} (target <= 1.10)"
    else:
        line += "; torchattacks not installed"
    print(line)


def guarded(name: str, fn: Callable[[], object]) -> object:
    """Run one row; a failure prints its traceback and the next rows still run (one GPU lease, every row)."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - report and go on: the other rows are still worth measuring
        print(f"ROW FAILED: {name}", flush=True)
        traceback.print_exc()
        sys.stdout.flush()
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes on the CPU: a smoke test, not figures")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed seconds of the 1,000-class search")
    parser.add_argument(
        "--skip-search", action="store_true", help="leave out the 1,000-class search rows (measured by another run)"
    )
    args = parser.parse_args()
    device = "cpu" if args.quick or not torch.cuda.is_available() else "cuda"
    card = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    print(f"device {card}; torch {torch.__version__}; CUDA {torch.version.cuda}; foolbench {fb.__version__}")
    if device == "cpu":
        torch.set_num_threads(2)
        t_fwd = effnet_rows(device, batch=8, size=64)
        render_rows(device, n=16, size=64, t_forward=t_fwd, forward_batch=8)
        imagenet_search_row(device, batch=8, size=64, seconds=3.0)
        direct_rows(device, batches=(256,), generations=5)
        pgd_row(device, n=100, steps=10)
        return
    t_fwd = guarded("effnet", lambda: effnet_rows(device, batch=256, size=224))
    guarded("chunks", lambda: chunk_row(device, images=512, size=224))
    t_forward = t_fwd if isinstance(t_fwd, float) else float("nan")
    guarded("render", lambda: render_rows(device, n=256, size=224, t_forward=t_forward, forward_batch=256))
    if not args.skip_search:
        guarded("imagenet", lambda: imagenet_search_row(device, batch=512, size=224, seconds=args.seconds))
        guarded(
            "imagenet verify",
            lambda: imagenet_search_row(device, batch=512, size=224, seconds=args.seconds / 2, verify=True),
        )
    guarded("direct", lambda: direct_rows(device, batches=(1024, 8192), generations=50))
    guarded("pgd", lambda: pgd_row(device, n=1000, steps=40))


if __name__ == "__main__":
    main()
