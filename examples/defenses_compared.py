"""Defenses compared on the MNIST LeNet: what each costs in clean accuracy, and what it holds.

For no defense, median smoothing, 1-bit depth reduction, a voting ensemble and Gaussian smoothing:
clean accuracy on held-out digits, robust accuracy under adaptive PGD (BPDA), and the confidence
evolution still reaches. Saves ``defenses_compared.png`` (a bar chart; needs matplotlib).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import foolbench as fb

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--fast", action="store_true", help="small budgets (CI runs every example this way)")
parser.add_argument("--out", type=Path, default=Path("out"), help="folder for the figure")
args = parser.parse_args()
args.out.mkdir(parents=True, exist_ok=True)
fast, out = args.fast, args.out
clf = fb.models.lenet_mnist()
x, y = fb.data.mnist_digits("test", limit=200 if fast else 1000)
defended = {
    "none": clf,
    "median 3x3": fb.defenses.MedianSmoothing(clf, 3),
    "1-bit": fb.defenses.BitDepthReduction(clf, 1),
    "gaussian 1.0": fb.defenses.GaussianSmoothing(clf, 1.0),
    "vote(lenet, median, 1-bit)": fb.defenses.Ensemble(
        [clf, fb.defenses.MedianSmoothing(clf, 3), fb.defenses.BitDepthReduction(clf, 1)], combine="vote"
    ),
}
rows = []
for name, model in defended.items():
    clean = float((model.predict(x) == y).float().mean())
    robust = float(
        (model.predict(fb.search.PGD(eps=0.3, steps=20)(model, x[:100], y[:100]).adversarial) == y[:100]).float().mean()
    )
    recipe = fb.search.MNIST_RECIPE
    evo = fb.search.MAPElites(model, recipe.encoding((1, 28, 28)), batch_size=recipe.batch_size, seed=0).run(
        max_evaluations=3_000 if fast else 30_000, target_confidence=0.9999, progress=False
    )
    rows.append((name, clean, robust, float(evo.confidence.median())))
    print(f"{name:<28} clean {clean:.3f}  PGD-0.3 robust {robust:.3f}  evolved median confidence {rows[-1][3]:.5f}")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(8, 3.5))
names = [r[0] for r in rows]
for i, (label, col) in enumerate(
    [("clean accuracy", 1), ("robust accuracy, PGD eps 0.3", 2), ("evolved median confidence", 3)]
):
    ax.bar([j + 0.27 * (i - 1) for j in range(len(rows))], [r[col] for r in rows], width=0.27, label=label)
ax.set_xticks(range(len(rows)), names, fontsize=7)
ax.set_ylim(0, 1.05)
ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)
fig.tight_layout()
fig.savefig(out / "defenses_compared.png", dpi=120)
