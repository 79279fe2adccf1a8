"""PGD at the floor: ``python benchmarks/bench_attacks.py [--n 1000] [--repeats 3] [--threads 2]``.

Prints, measured in one run on the same model, digits and settings (lenet_mnist, L-inf eps 0.3,
40 steps of 0.01, random start, 1,000 real test digits, one batch):

- a bare hand-written PGD loop on the classifier's module (the floor: the same steps, random
  start and final prediction, no checks);
- ``foolbench.search.PGD`` (inputs checked, NaN guard, success re-checked on the result);
- ``torchattacks.PGD`` when it imports (``pip install --no-deps torchattacks``; it needs no
  torchvision to import), on the same module.

Runs alternate between the three and the best of ``--repeats`` is kept, so a loaded machine
slows each about equally; the ratios are foolbench / floor and foolbench / torchattacks.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import foolbench as fb

EPS, STEPS, ALPHA = 0.3, 40, 0.01


def bare_pgd(clf: fb.models.TorchClassifier, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
    """The floor: PGD written by hand on the module, with the same random start and a final prediction."""
    gen = torch.Generator().manual_seed(seed)
    module, pre = clf.module, clf.preprocess
    adv = (x + (torch.rand(x.shape, generator=gen) * 2 - 1) * EPS).clamp(0, 1)
    for _ in range(STEPS):
        adv.requires_grad_(True)
        loss = F.cross_entropy(module(pre(adv)), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, adv)
        adv = (x + (adv.detach() + ALPHA * g.sign() - x).clamp(-EPS, EPS)).clamp(0, 1)
    with torch.no_grad():
        module(pre(adv)).argmax(1)
    return adv


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu")
    clf = fb.models.lenet_mnist()
    x, y = fb.models.mnist_digits("test", limit=args.n)
    ours = fb.search.PGD(EPS, steps=STEPS, step_size=ALPHA)
    runs: dict[str, Callable[[], object]] = {
        "bare loop (floor)": lambda: bare_pgd(clf, x, y, 0),
        "foolbench PGD": lambda: ours(clf, x, y, seed=0),
    }
    try:
        import torchattacks

        class Bare(torch.nn.Module):
            def forward(self, t: torch.Tensor) -> torch.Tensor:
                out: torch.Tensor = clf.module(clf.preprocess(t))
                return out

        theirs = torchattacks.PGD(Bare().eval(), eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)
        runs["torchattacks PGD"] = lambda: clf.module(clf.preprocess(theirs(x, y))).argmax(1)
        note = f"torchattacks {torchattacks.__version__}"
    except ImportError as err:
        note = f"torchattacks not importable ({err}); pip install --no-deps torchattacks"
    print(note)
    best = dict.fromkeys(runs, float("inf"))
    for fn in runs.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    res = ours(clf, x, y, seed=0)
    floor_adv = bare_pgd(clf, x, y, 0)
    print(
        f"PGD L-inf eps={EPS}, {STEPS} steps of {ALPHA}, {args.n} digits in one batch, lenet_mnist, "
        f"best of {args.repeats}:"
    )
    for name, sec in best.items():
        print(f"  {name:<20} {sec:7.3f} s   ({sec / best['bare loop (floor)']:.3f}x the floor)")
    if "torchattacks PGD" in best:
        print(f"  foolbench / torchattacks: {best['foolbench PGD'] / best['torchattacks PGD']:.3f} (target <= 1.10)")
    print(
        f"  success: foolbench {res.success_rate:.3f}, floor "
        f"{float((clf.predict(floor_adv) != y).float().mean()):.3f}; largest pixel difference from the floor's "
        f"images {float((res.adversarial - floor_adv).abs().max()):.2g}"
    )


if __name__ == "__main__":
    main()
