"""Adapter overhead and model throughput: ``python benchmarks/bench_models.py``.

Prints TorchClassifier.probs throughput against the bare module on the same
batches (target ratio >= 0.95) for lenet_mnist, and EfficientNet-Lite0 images/s
at 224 x 224: channels-last vs contiguous, then by chunk size (``batch_size``) and
precision, with the BatchNorms folded (``fold_batchnorm=True``), and (``--compile``) through
torch.compile with the weights frozen in (float32 chunks of 4, 8 and 16; bf16 chunks of 8), each
measured alternately in one run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import foolbench as fb

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, machine


def compare(clf: fb.models.TorchClassifier, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    module = clf.module

    def bare() -> None:
        with torch.no_grad():
            for chunk in torch.split(x, clf.batch_size):
                torch.softmax(module(clf.preprocess(chunk)), 1)

    t_bare = best_of(bare, repeats=repeats)
    t_ours = best_of(lambda: clf.probs(x), repeats=repeats)
    return x.shape[0] / t_bare, x.shape[0] / t_ours


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI smoke runs")
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows (10-30 s to compile each)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(machine())
    lenet = fb.models.lenet_mnist(batch_size=256)
    n = 1024 if args.quick else 8192
    bare, ours = compare(lenet, torch.rand(n, 1, 28, 28), repeats=3 if args.quick else 7)
    print(
        f"lenet_mnist  {n} images, chunks of 256: bare {bare:,.0f} img/s, probs {ours:,.0f} img/s, "
        f"ratio {ours / bare:.3f} (target >= 0.95)"
    )
    n = 8 if args.quick else 64
    x = torch.rand(n, 3, 224, 224)
    rates = {}
    for layout in (False, True, False, True):  # alternated, so a load change hits both layouts alike
        eff = fb.models.efficientnet_lite0(batch_size=16, channels_last=layout)
        bare, ours = compare(eff, x, repeats=2 if args.quick else 3)
        rates[layout] = max(rates.get(layout, (0.0, 0.0)), (ours, bare))
    for layout, (ours, bare) in rates.items():
        print(
            f"efficientnet_lite0 224x224, {n} images, {'channels_last' if layout else 'contiguous'}: "
            f"bare {bare:.1f} img/s, probs {ours:.1f} img/s, ratio {ours / bare:.3f}"
        )
    print(f"channels_last (the default) / contiguous, probs: {rates[True][0] / rates[False][0]:.2f}x")
    chunks(x, repeats=1 if args.quick else 3, compiled=args.compile)


def chunks(x: torch.Tensor, repeats: int, compiled: bool) -> None:
    """EfficientNet-Lite0 probs images/s by chunk size and precision, rounds alternated."""
    cases = [("fp32", 4), ("fp32", 8), ("fp32", 16), ("fp32", 64), ("bf16", 8), ("bf16", 16)]
    clfs = {c: fb.models.efficientnet_lite0(precision=c[0], batch_size=c[1]) for c in cases}
    for precision, chunk in [("fp32", 4), ("bf16", 8)]:  # BatchNorms folded into the convolutions
        cases.append((precision + " folded", chunk))
        clfs[cases[-1]] = fb.models.efficientnet_lite0(precision=precision, batch_size=chunk, fold_batchnorm=True)
    if compiled:
        for precision, chunk in [("fp32", 4), ("fp32", 8), ("fp32", 16), ("bf16", 8)]:  # its chunk size too
            clf = fb.models.efficientnet_lite0(precision=precision, batch_size=chunk).replace(compile=True)
            clf.probs(x)  # compile outside the timing
            cases.append((precision + " compiled", chunk))
            clfs[cases[-1]] = clf
    best = dict.fromkeys(cases, 0.0)
    for _ in range(repeats):
        for case, clf in clfs.items():
            best[case] = max(best[case], x.shape[0] / best_of(lambda clf=clf: clf.probs(x), repeats=1))
    reference = clfs[("fp32", 4)].log_probs(x)
    for (precision, chunk), rate in best.items():
        drift = float((clfs[precision, chunk].log_probs(x) - reference).abs().max())
        mark = " (default)" if chunk == fb.models.default_chunk("cpu", precision.split()[0]) else ""
        print(
            f"efficientnet_lite0 {precision} chunks of {chunk:>2}{mark}: "
            f"{rate:.1f} img/s, {rate / best['fp32', 16]:.2f}x chunks of 16; max |log-prob - fp32| {drift:.2g}"
        )


if __name__ == "__main__":
    main()
