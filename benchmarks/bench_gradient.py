"""Gradient methods: ``python benchmarks/bench_gradient.py [--quick] [--skip-imagenet]``.

Prints, measured side by side in one run on the same model and data:
- universal perturbations on lenet_mnist, L-inf, fitted on 500 real digits and evaluated on the 1,000
  held-out digits, at eps 0.1 / 0.2 / 0.3, for both methods;
- our UAP against the Adversarial Robustness Toolbox's ``UniversalPerturbation`` (DeepFool attacker),
  same fitting digits, eps and one pass (needs ``pip install adversarial-robustness-toolbox``);
- our PGD against ``torchattacks.PGD``, same model, batch and settings
  (needs ``pip install --no-deps torchattacks``; ``bench_attacks.py`` adds the bare-loop floor);
- gradient ascent from noise: 10 lenet_mnist digits and 10 EfficientNet-Lite0 classes to >= 99.99%.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import foolbench as fb

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of


class Bare(torch.nn.Module):
    """The classifier's module with its preprocessing, for libraries that take a plain nn.Module."""

    def __init__(self, clf: fb.models.TorchClassifier) -> None:
        super().__init__()
        self.clf = clf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.clf.module(self.clf.preprocess(x))
        return out


def uap_table(clf: fb.models.TorchClassifier, fit: torch.Tensor, held: torch.Tensor, quick: bool) -> None:
    for method, kw in [
        ("sgd", {"max_passes": 20, "batch_size": 32}),
        ("deepfool", {"max_passes": 3, "batch_size": 128}),
    ]:
        for eps in (0.1, 0.2, 0.3):
            t = time.perf_counter()
            uap = fb.search.UniversalPerturbation(eps=eps, method=method, seed=0, **kw).fit(clf, fit)  # type: ignore[arg-type]
            rate = fb.search.fooling_rate(clf, held, uap.perturbation)
            print(
                f"UAP {method:<8} eps={eps}: fitting-set fooling {uap.fooling_rate:.3f}, held-out fooling "
                f"{rate:.3f} ({held.shape[0]} digits), {uap.passes} passes, {time.perf_counter() - t:.1f} s"
            )
            if quick:
                break


def versus_art(clf: fb.models.TorchClassifier, fit: torch.Tensor, held: torch.Tensor, eps: float) -> None:
    try:
        import numpy as np
        from art.attacks.evasion import UniversalPerturbation as ArtUAP
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        print("ART not installed: pip install adversarial-robustness-toolbox (skipped)")
        return

    art_clf = PyTorchClassifier(
        model=Bare(clf).eval(),
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    attack = ArtUAP(art_clf, attacker="deepfool", delta=0.2, max_iter=1, eps=eps, norm=np.inf, verbose=False)
    t = time.perf_counter()
    attack.generate(fit.numpy())
    t_art = time.perf_counter() - t
    art_rate = fb.search.fooling_rate(clf, held, torch.from_numpy(attack.noise[0]).float())
    t = time.perf_counter()
    ours = fb.search.UniversalPerturbation(eps=eps, method="deepfool", max_passes=1, batch_size=128, seed=0).fit(
        clf, fit
    )
    t_df = time.perf_counter() - t
    df_rate = fb.search.fooling_rate(clf, held, ours.perturbation)
    t = time.perf_counter()
    sgd = fb.search.UniversalPerturbation(eps=eps, method="sgd", max_passes=20, batch_size=32, seed=0).fit(clf, fit)
    t_sgd = time.perf_counter() - t
    sgd_rate = fb.search.fooling_rate(clf, held, sgd.perturbation)
    print(f"UAP vs ART (eps={eps}, {fit.shape[0]} fitting digits, held-out {held.shape[0]}):")
    print(f"  ART UniversalPerturbation(deepfool), 1 pass: {t_art:.1f} s, held-out fooling {art_rate:.3f}")
    print(
        f"  foolbench deepfool, 1 pass:                  {t_df:.1f} s, held-out fooling {df_rate:.3f} "
        f"({t_art / t_df:.1f}x faster)"
    )
    print(
        f"  foolbench sgd, 20 passes:                    {t_sgd:.1f} s, held-out fooling {sgd_rate:.3f} "
        f"({t_art / t_sgd:.1f}x faster)"
    )


def versus_torchattacks(clf: fb.models.TorchClassifier, x: torch.Tensor, y: torch.Tensor) -> None:
    try:
        import torchattacks
    except ImportError:
        print("torchattacks not installed: pip install --no-deps torchattacks (skipped)")
        return

    theirs = torchattacks.PGD(Bare(clf).eval(), eps=0.3, alpha=0.01, steps=40, random_start=True)
    ours = fb.search.PGD(0.3, steps=40, step_size=0.01)
    t_theirs = best_of(lambda: theirs(x, y), repeats=3)
    t_ours = best_of(lambda: ours(clf, x, y), repeats=3)
    print(
        f"PGD L-inf eps=0.3, 40 steps, batch {x.shape[0]}: torchattacks {t_theirs:.2f} s, foolbench {t_ours:.2f} s, "
        f"ratio ours/theirs {t_ours / t_theirs:.2f} (target <= 1.10); success "
        f"{ours(clf, x, y).success_rate:.3f} vs {float((clf.predict(theirs(x, y)) != y).float().mean()):.3f}"
    )


def ascent(quick: bool, imagenet: bool) -> None:
    clf = fb.models.lenet_mnist()
    res = fb.search.GradientAscent(clf, steps=500, seed=0).run()
    print(
        f"gradient ascent lenet_mnist: {int(res.fooled(0.9999).sum())}/10 digits >= 99.99% after "
        f"{res.evaluations // 10} steps, {res.seconds:.1f} s; min confidence {float(res.confidence.min()):.6f}"
    )
    if not imagenet:
        return
    eff = fb.models.efficientnet_lite0()
    classes = [1, 9, 130, 285, 409, 530, 717, 852, 954, 967] if not quick else [285, 967]
    res = fb.search.GradientAscent(eff, steps=200, lr=0.01, seed=0).run(classes=classes)
    print(
        f"gradient ascent EfficientNet-Lite0 224x224: {int(res.fooled(0.9999).sum())}/{len(classes)} classes "
        f">= 99.99% after {len(res.history)} steps, {res.seconds:.1f} s; confidences "
        + ", ".join(f"{n}={float(c):.5f}" for n, c in zip(res.class_names, res.confidence, strict=True))
    )
    res.save_png(Path("benchmarks/out/ascent_efficientnet.png"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-imagenet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu")
    clf = fb.models.lenet_mnist()
    fit = fb.models.mnist_digits("train", limit=500)[0]
    held = fb.models.mnist_digits("test")[0]
    uap_table(clf, fit, held, args.quick)
    versus_art(clf, fit[: 50 if args.quick else 200], held, eps=0.2)
    x, y = fb.models.mnist_digits("test", limit=256)
    versus_torchattacks(clf, x, y)
    ascent(args.quick, not args.skip_imagenet)


if __name__ == "__main__":
    main()
