"""Fool your own model in 10 lines: wrap any nn.Module, evolve one fooling image per class.

Trains a small MLP on 4,000 real MNIST digits (a few seconds), then MAP-Elites evolves, for each digit,
an image the MLP calls that digit with >= 99.99% confidence. Saves ``fool_your_model.png``.
"""

from __future__ import annotations

import torch
from _common import parse

import foolbench as fb

fast, out = parse(__doc__ or "")
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
x, y = fb.models.mnist_digits("train")
fb.models.train_classifier(net, x, y, epochs=1 if fast else 3, max_shift=0)

# --- the 10 lines -----------------------------------------------------------------------------
clf = fb.models.TorchClassifier(net.eval(), input_shape=(1, 28, 28), num_classes=10)
encoding = fb.encodings.DirectEncoding((1, 28, 28), mutation_rate=0.02, eta=1.0)
search = fb.search.MAPElites(clf, encoding, batch_size=64, seed=0)
result = search.run(max_evaluations=5_000 if fast else 60_000, target_confidence=0.9999, progress=False)
result.save_png(out / "fool_your_model.png")
print(result.to_markdown("Fooling images for my MLP"))
