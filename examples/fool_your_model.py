"""Fool your own model in 10 lines: wrap any nn.Module, evolve one fooling image per class.

Trains a small MLP on 4,000 real MNIST digits (a few seconds), then MAP-Elites evolves, for each digit,
an image the MLP calls that digit with >= 99.99% confidence. Saves ``fool_your_model.png``.
Run ``python fool_your_model.py --out out`` (add ``--fast`` for a quick, low-confidence check).
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

torch.manual_seed(0)  # the MLP's initial weights
net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
x, y = fb.data.mnist_digits("train")
fb.data.train_classifier(net, x, y, epochs=1 if args.fast else 5, max_shift=0)

# --- the 10 lines -----------------------------------------------------------------------------
recipe = fb.search.MNIST_RECIPE  # batch 64, 2% of pixels per mutation, eta 1
clf = fb.models.TorchClassifier(net.eval(), input_shape=(1, 28, 28), num_classes=10)
search = fb.search.MAPElites(clf, recipe.encoding((1, 28, 28)), batch_size=recipe.batch_size, seed=0)
result = search.run(max_evaluations=5_000 if args.fast else 60_000, target_confidence=0.9999, progress=False)
result.save_png(args.out / "fool_your_model.png")
print(result.to_markdown("Fooling images for my MLP"))
