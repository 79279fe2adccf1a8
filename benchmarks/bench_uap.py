"""Universal perturbations, DeepFool vs SGD: ``python benchmarks/bench_uap.py [--epochs N]``.

Measured side by side in one run, on a model no default was tuned on: a small tanh CNN trained
here (seeded) on the 4,000 training digits; eps 0.3 L-inf, fitted on 500 training digits,
fooling rate on the 1,000 held-out digits, and the wall time of each fit:

- ``method="deepfool"`` with the settings that were the default before 0.2
  (``max_passes=5, batch_size=128, deepfool_steps=10``);
- ``method="sgd", max_passes=20, batch_size=32`` (the default since 0.2: ``UniversalPerturbation(eps=0.3)``);
- uniform noise of the same size, as the floor.
"""

from __future__ import annotations

import argparse
import time

import torch

import foolbench as fb


def tanh_cnn(seed: int) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 5),
            torch.nn.Tanh(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 5),
            torch.nn.Tanh(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(512, 64),
            torch.nn.Tanh(),
            torch.nn.Linear(64, 10),
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu")
    xtr, ytr = fb.models.mnist_digits("train")
    xte, yte = fb.models.mnist_digits("test")
    t = time.perf_counter()
    net = fb.models.train_classifier(tanh_cnn(0), xtr, ytr, epochs=args.epochs, seed=0).eval()
    clf = fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10)
    acc = float((clf.predict(xte) == yte).float().mean())
    print(
        f"tanh CNN trained on {xtr.shape[0]} digits, {args.epochs} epochs, {time.perf_counter() - t:.1f} s; held-out accuracy {acc:.3f}"
    )
    fit = xtr[:500]
    noise = torch.empty(1, 28, 28).uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(0)).sign() * 0.3
    print(f"eps 0.3 L-inf, fit on {fit.shape[0]}, held-out {xte.shape[0]}:")
    print(
        f"  +-0.3 random sign noise:                              held-out fooling {fb.search.fooling_rate(clf, xte, noise):.3f}"
    )
    runs = [
        (
            "deepfool, max_passes=5, batch_size=128 (old default)",
            {"method": "deepfool", "max_passes": 5, "batch_size": 128},
        ),
        ("sgd, max_passes=20, batch_size=32", {"method": "sgd", "max_passes": 20, "batch_size": 32}),
        ("UniversalPerturbation(eps=0.3) (new default)", {}),
    ]
    for name, kw in runs:
        uap = fb.search.UniversalPerturbation(eps=0.3, seed=0, **kw)  # type: ignore[arg-type]
        t = time.perf_counter()
        res = uap.fit(clf, fit)
        seconds = time.perf_counter() - t
        rate = fb.search.fooling_rate(clf, xte, res.perturbation)
        print(
            f"  {name:<53} held-out fooling {rate:.3f}, fitting-set {res.fooling_rate:.3f}, "
            f"{res.passes} passes, {seconds:.1f} s  [{uap!r}]"
        )


if __name__ == "__main__":
    main()
