"""A universal adversarial perturbation for the MNIST LeNet, and how it transfers to another net.

Fits one L-inf perturbation (eps 0.3) on 500 training digits, measures its fooling rate on 1,000
held-out digits, and on a second, independently trained CNN. Saves ``universal_perturbation.png``
(the perturbation, and digits before / after).
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
lenet = fb.models.lenet_mnist()
x_train, y_train = fb.data.mnist_digits("train")
x_test, _ = fb.data.mnist_digits("test")
torch.manual_seed(0)
cnn_net = fb.bench.factories.small_cnn(10)
fb.data.train_classifier(cnn_net, x_train, y_train, epochs=1 if fast else 3, max_shift=0)
cnn = fb.models.TorchClassifier(cnn_net.eval(), input_shape=(1, 28, 28), num_classes=10)

uap = fb.search.UniversalPerturbation(eps=0.3, method="sgd", max_passes=3 if fast else 20, seed=0)
v = uap.fit(lenet, x_train[:500]).perturbation
names, rates = fb.search.transfer_matrix(
    {"lenet": lenet, "cnn": cnn}, {"lenet": v, "cnn": uap.fit(cnn, x_train[:500]).perturbation}, x_test
)
print(f"held-out fooling rate (rows: made on {names}; columns: evaluated on {names})")
print(rates)
shown = x_test[:9]
images = torch.cat([(v.unsqueeze(0) / 0.6 + 0.5).clamp(0, 1), shown, (shown + v).clamp(0, 1)])
pred = lenet.predict(images).tolist()
captions = ["perturbation"] + [f"clean: {p}" for p in pred[1:10]] + [f"perturbed: {p}" for p in pred[10:]]
fb.save_grid(images, captions, out / "universal_perturbation.png", columns=10)
