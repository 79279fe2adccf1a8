"""Gradient ascent (white box) vs evolution (black box), side by side on the shipped MNIST LeNet.

Both start from noise and aim at >= 99.99% for each digit; the figure ``ascent_vs_evolution.png``
shows evolution's images on the top row and gradient ascent's below, with their confidences.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import foolbench as fb

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--fast", action="store_true", help="small budgets (CI runs every example this way)")
parser.add_argument("--out", type=Path, default=Path("out"), help="folder for the figure")
args = parser.parse_args()
args.out.mkdir(parents=True, exist_ok=True)
fast, out = args.fast, args.out
clf = fb.models.lenet_mnist()
recipe = fb.search.MNIST_RECIPE  # batch 64, 2% of pixels per mutation, eta 1
evolved = fb.search.MAPElites(clf, recipe.encoding((1, 28, 28)), batch_size=recipe.batch_size, seed=0)
evo = evolved.run(max_evaluations=5_000 if fast else 40_000, target_confidence=0.9999, progress=False)
grad = fb.search.GradientAscent(clf, steps=50 if fast else 300, seed=0).run()
print(f"evolution: {evo.evaluations:,} black-box evaluations, median {float(evo.confidence.median()):.6f}")
print(f"gradient ascent: {grad.evaluations:,} forward-backward passes, median {float(grad.confidence.median()):.6f}")
images = torch.cat([evo.images.cpu(), grad.images.cpu()])
captions = [f"evolved {c}\n{100 * float(p):.3f}%" for c, p in zip(evo.classes.tolist(), evo.confidence, strict=True)]
captions += [f"ascent {c}\n{100 * float(p):.3f}%" for c, p in zip(grad.classes.tolist(), grad.confidence, strict=True)]
fb.save_grid(images, captions, out / "ascent_vs_evolution.png", columns=10)
