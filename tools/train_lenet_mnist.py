"""Reproduce the shipped LeNet weights: ``python tools/train_lenet_mnist.py``.

Trains :class:`foolbench.models.LeNet` on the 4,000 ``"train"`` digits of
:func:`foolbench.data.mnist_digits` (seed 0), prints held-out accuracy on the
1,000 ``"test"`` digits and writes ``foolbench/models/_assets/lenet_mnist.pt``.

Training now runs on one thread (bit-identical on any machine). The shipped
file was trained before that, with torch's default thread count on the machine
of the time, so a rerun gives the same recipe and a similar accuracy but not
bit-identical weights; pass ``--out`` to keep the shipped file.

``--noise-share 0.25`` trains the separate noise-trained LeNet
(:func:`foolbench.models._lenet.lenet_mnist_noise_trained`) with outlier
exposure: a quarter extra uniform-noise images per batch, trained towards the
uniform distribution, and writes ``_assets/lenet_mnist_noise_trained.pt``
(bit-identical on any machine).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import foolbench as fb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-share", type=float, default=0.0, help="outlier exposure: noise images per real image")
    parser.add_argument("--out", type=Path, default=None, help="default: the package asset for the chosen model")
    args = parser.parse_args()
    if args.out is None:
        name = "lenet_mnist_noise_trained.pt" if args.noise_share > 0 else "lenet_mnist.pt"
        args.out = Path(fb.models.__file__).parent / "_assets" / name
    torch.manual_seed(args.seed)  # weight initialisation only; this is a script, not library code
    x, y = fb.data.mnist_digits("train")
    net = fb.models.LeNet()
    mean, std = fb.models.MNIST_MEAN, fb.models.MNIST_STD

    class Normalise(torch.nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return (t - mean) / std

    norm = Normalise()
    fb.data.train_classifier(
        net, x, y, epochs=args.epochs, preprocess=norm, seed=args.seed, noise_share=args.noise_share
    )
    net.eval()
    clf = fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10, mean=mean, std=std)
    xt, yt = fb.data.mnist_digits("test")
    acc = (clf.predict(xt) == yt).float().mean().item()
    print(f"held-out accuracy on {len(yt)} test digits: {acc:.4f}")
    noise = torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    top = clf.probs(noise).max(1)
    counts = torch.bincount(top.indices, minlength=10).tolist()
    print(
        f"1,000 U(0,1) noise images (seed 0): median top confidence {top.values.median().item():.4f}, argmax {counts}"
    )
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    with tempfile.NamedTemporaryFile(dir=args.out.parent, delete=False, suffix=".tmp") as tmp:
        torch.save(state, tmp.name)
    Path(tmp.name).replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
