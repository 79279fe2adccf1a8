"""CPPN render speed: ``python benchmarks/bench_cppn_render.py [--n 256] [--device cpu|cuda] [--search S [--compile]]``.

Prints, measured side by side in one run, for 256 evolved genomes (30 rounds of mutation):

- on every device: the batched tensor path vs the same code one genome at a time in a Python loop,
  at 28x28x1 and 64x64x3 (and 224x224x3 on CUDA);
- on CUDA with Triton installed: also the fused Triton kernel (``backend="triton"``), its speed-up over
  the batched tensor path and over the one-by-one loop (issue 14 target: >= 100x the loop), and its
  largest difference from the tensor path (it must stay <= 1e-5).

On CPU the Triton kernel runs only in Triton's interpreter (a correctness tool, far slower than the
tensor path), so it is not timed there.

On CPU it also prints three render savings against the render without them, side by side (best of 10,
the variants taking turns; the images compared bit for bit, else their largest difference): 64 genomes
at 28x28x1 and 16 at 224x224x3 (a generation of the MNIST and of the ImageNet search), mutated from
random ones; with ``--mnist-search S`` / ``--search S`` the MNIST CPPN search (lenet_mnist, batch 64) /
the ImageNet proxy search (MAP-Elites + CPPN on EfficientNet-Lite0, the 10 texture classes, batch 16),
strength 2, seed 0, with the render as it is and without the newest saving (``SEARCH_WITHOUT``: the
sparse node sums), in alternating slices of 10 generations for about S seconds each: evaluations per
second of each, whether the two searches' states (archive, history, random state) are equal and the
share of each search's time spent in the render; then the savings on the search's next children.
``--compile``: the ImageNet proxy search's model through ``torch.compile`` (the CPU's best setting, where
the render is a larger share); ``--skip-shapes``: the searches alone.

- each node of an image of >= 8,192 pixels summed from its own connections, one genome at a time,
  instead of a matrix product over every row before it (``_cppn._SPARSE_MIN_PIXELS``): the images
  differ by float rounding (the sums round apart from the product), so a seeded search's path changes;
- the gaussian's exponent floored at -50 (``_cppn._EXP_FLOOR``): the CPU ``exp`` of an argument that
  underflows takes a slow path;
- mixed activations applied once per activation over its own rows, in place: adjacent rows as a view
  (a one-genome chunk's outputs), scattered rows gathered and put back (``_cppn._GROUP_ROWS``);

where 0.1.0's render used the product at every size, and applied every activation present to every
row and chose with ``torch.where``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

import foolbench as fb
from foolbench import _checkpoint
from foolbench.encodings import _cppn

sys.path.insert(0, str(Path(__file__).parent))
from _common import TEXTURE_CLASSES, best_of, grown_genomes


@contextlib.contextmanager
def without_savings(*, floor: bool = True, group: bool = True, sparse: bool = True) -> Iterator[None]:
    """The CPU render without these savings: the exponent floor, the grouped activations, the sparse sums."""
    saved = _cppn._EXP_FLOOR, _cppn._GROUP_ROWS, _cppn._SPARSE_MIN_PIXELS
    if floor:
        _cppn._EXP_FLOOR = -math.inf
    if group:
        _cppn._GROUP_ROWS = False
    if sparse:
        _cppn._SPARSE_MIN_PIXELS = sys.maxsize
    try:
        yield
    finally:
        _cppn._EXP_FLOOR, _cppn._GROUP_ROWS, _cppn._SPARSE_MIN_PIXELS = saved


SAVINGS = {
    "without the sparse node sums": {"floor": False, "group": False, "sparse": True},
    "without the exponent floor": {"floor": True, "group": False, "sparse": False},
    "without grouped activations": {"floor": False, "group": True, "sparse": False},
    "without all three (0.1.0's render)": {"floor": True, "group": True, "sparse": True},
}
#: What the search A/B's other arm leaves out: the newest saving (the others are measured in docs/performance.md).
SEARCH_WITHOUT = "without the sparse node sums"


def bench_savings(g: fb.encodings.CPPNGenomes, label: str, shape: tuple[int, int, int]) -> None:
    enc = fb.encodings.CPPNEncoding(shape, backend="torch")
    now = enc.render(g)
    variants: dict[str, dict[str, bool] | None] = {"now": None, **SAVINGS}
    same = {"now": "True"}
    for name, off in SAVINGS.items():
        with without_savings(**off):
            other = enc.render(g)
        same[name] = "True" if torch.equal(other, now) else f"False, max |diff| {float((other - now).abs().max()):.1e}"
    best = dict.fromkeys(variants, math.inf)
    for _ in range(10):  # the variants take turns, so a change of load hits all alike
        for name, switches in variants.items():
            with without_savings(**switches) if switches is not None else contextlib.nullcontext():
                t = time.perf_counter()
                enc.render(g)
                best[name] = min(best[name], time.perf_counter() - t)
    size = "x".join(map(str, (*shape[1:], shape[0])))
    nodes = float(g.num_nodes().float().mean())
    print(f"{len(g)} {label} at {size} on cpu (mean {nodes:.1f} nodes), best of 10 taken in turns:")
    for name, t in best.items():
        print(f"  {name:38s} {t * 1e3:7.1f} ms  ({t / best['now']:.2f}x now's time; same images: {same[name]})")


def state_digest(search: fb.search.MAPElites) -> str:
    """Digest of a search's state (archive, history, random state), its clock aside."""
    payload = search.state_dict()["payload"]
    return _checkpoint.digest({k: v for k, v in payload.items() if k != "seconds"})


def bench_search(task: str, seconds: float, *, compiled: bool = False) -> None:
    """One search with the savings and one without, in alternating slices of 10 generations."""
    if task == "imagenet":  # the 10-class CPU proxy of the paper's ImageNet run
        clf: fb.models.Classifier = fb.models.efficientnet_lite0(device="cpu").replace(compile=compiled)
        shape, classes, batch, what = (
            (3, 224, 224),
            TEXTURE_CLASSES,
            16,
            f"EfficientNet-Lite0 fp32{', compiled' if compiled else ''}, 10 classes, batch 16",
        )
    else:  # CPPN fooling images for the shipped LeNet (the paper's MNIST CPPN run)
        clf = fb.models.lenet_mnist()
        shape, classes, batch, what = (1, 28, 28), None, 64, "lenet_mnist, 10 digits, batch 64"
    enc = fb.encodings.CPPNEncoding(shape)
    if compiled:  # compiled before the clock starts
        clf.log_probs(enc.render(enc.sample(batch, torch.Generator().manual_seed(0))))
    in_render: dict[str, float] = {}
    arm = ["now"]
    render = enc.render

    def timed_render(genomes: fb.encodings.CPPNGenomes, **kwargs: Any) -> torch.Tensor:
        t = time.perf_counter()
        out = render(genomes, **kwargs)
        in_render[arm[0]] = in_render.get(arm[0], 0.0) + time.perf_counter() - t
        return out

    enc.render = timed_render  # type: ignore[method-assign]  # the time each arm spends rendering

    def search() -> fb.search.MAPElites:
        return fb.search.MAPElites(
            clf,
            enc,
            classes=classes,
            batch_size=batch,
            seed=0,
            mutation_schedule=2.0,
            parents=fb.search.UnmetFirst(confidence=0.99),
        )

    arms = {"now": search(), "before": search()}
    spent = dict.fromkeys(arms, 0.0)
    while min(spent.values()) < seconds:
        for name, s in arms.items():
            ctx = without_savings(**SAVINGS[SEARCH_WITHOUT]) if name != "now" else contextlib.nullcontext()
            arm[0] = name
            with ctx:
                t = time.perf_counter()
                s.run(generations=s.generation + 10, progress=False)
                spent[name] += time.perf_counter() - t
    evals = {name: s.result().evaluations for name, s in arms.items()}
    assert evals["now"] == evals["before"], evals
    rates = {name: evals[name] / spent[name] for name in arms}
    same = state_digest(arms["now"]) == state_digest(arms["before"])
    print(
        f"the {task} search ({what}, strength 2, seed 0), {evals['now']:,} evaluations each: "
        f"now {rates['now']:.1f} eval/s, {SEARCH_WITHOUT} {rates['before']:.1f} eval/s "
        f"({rates['now'] / rates['before']:.2f}x); equal states (archive, history, random state): {same}; "
        f"time in the render: now {in_render['now']:.1f} of {spent['now']:.1f} s "
        f"({in_render['now'] / spent['now']:.0%}), without {in_render['before']:.1f} of {spent['before']:.1f} s "
        f"({in_render['before'] / spent['before']:.0%})"
    )
    enc.render = render  # type: ignore[method-assign]
    children = arms["now"].ask()  # the next generation's children: the genomes a search renders
    assert isinstance(children, fb.encodings.CPPNGenomes)
    arms["now"].cancel()
    bench_savings(children, f"children of the {task} search after {evals['now']:,} evaluations", shape)


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
    parser.add_argument(
        "--search",
        type=float,
        default=0.0,
        metavar="S",
        help="cpu: also run the ImageNet proxy search with and without the render savings, S seconds each",
    )
    parser.add_argument(
        "--mnist-search",
        type=float,
        default=0.0,
        metavar="S",
        help="cpu: also run the MNIST CPPN search (lenet_mnist) with and without the savings, S seconds each",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="the ImageNet proxy search with EfficientNet-Lite0 through torch.compile (the CPU's best setting)",
    )
    parser.add_argument(
        "--skip-shapes", action="store_true", help="leave out the batched-vs-loop and savings timings (searches only)"
    )
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(2)
        fb.tune_malloc()
    with_triton = args.device == "cuda" and importlib.util.find_spec("triton") is not None
    print(f"torch {torch.__version__}, {args.device}, threads {torch.get_num_threads()}, triton timed: {with_triton}")
    shapes = [(1, 28, 28), (3, 64, 64)] + ([(3, 224, 224)] if args.device == "cuda" else [])
    if not args.skip_shapes:
        for shape in shapes:
            bench_shape(shape, args.n, args.device, with_triton)
        if args.device == "cpu":
            for shape, n in (((1, 28, 28), 64), ((3, 224, 224), 16)):
                genomes = grown_genomes(fb.encodings.CPPNEncoding(shape), n, rounds=60)
                bench_savings(genomes, "genomes mutated 60 times from random ones", shape)
    if args.device == "cpu":
        if args.mnist_search > 0:
            bench_search("mnist", args.mnist_search)
        if args.search > 0:
            bench_search("imagenet", args.search, compiled=args.compile)


if __name__ == "__main__":
    main()
