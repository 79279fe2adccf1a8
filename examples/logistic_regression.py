"""The one-sign-step example on a logistic regression (the classic linear-model argument).

With W = (-1,-1,1,-1,1,-1,1,1,-1,1) and x = (2,-1,3,-2,2,2,1,-4,5,1), p(class 1) = 0.0474; one
FGSM step of 0.5 along sign(W) makes it 0.88, although no input moved by more than 0.5.
Saves ``logistic_regression.png`` (x and x' as bars).
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
w = torch.tensor([-1.0, -1, 1, -1, 1, -1, 1, 1, -1, 1])
x = torch.tensor([2.0, -1, 3, -2, 2, 2, 1, -4, 5, 1]).view(1, 1, 1, 10)
lin = torch.nn.Linear(10, 2)
with torch.no_grad():  # logit(1) - logit(0) = w . x
    lin.weight.copy_(torch.stack([torch.zeros(10), w]))
    lin.bias.zero_()
clf = fb.models.TorchClassifier(
    torch.nn.Sequential(torch.nn.Flatten(), lin).eval(), input_shape=(1, 1, 10), num_classes=2, bounds=(-10, 10)
)
adv = fb.search.FGSM(eps=0.5)(clf, x, torch.tensor([0]), target=1).adversarial
before, after = float(clf.probs(x)[0, 1]), float(clf.probs(adv)[0, 1])
print(f"p(class 1): {before:.4f} -> {after:.4f}")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 3))
ax.bar([i - 0.2 for i in range(10)], x.flatten(), width=0.4, label=f"x, p(1) = {before:.4f}")
ax.bar([i + 0.2 for i in range(10)], adv.flatten(), width=0.4, label=f"x + 0.5 sign(w), p(1) = {after:.2f}")
ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(out / "logistic_regression.png", dpi=120)
