"""A polish endgame, paired: ``python benchmarks/bench_polish_endgame.py [--minutes 10] [--endgame-minutes 2]``.

One MAP-Elites + CPPN search against EfficientNet-Lite0 (float32, compiled; the 10 texture classes of
the CPU proxy, or ``--classes all``) runs for ``--minutes`` minus ``--endgame-minutes`` minutes of
search time with the setting measured best before: strength 2, parents below 99% first,
``GradientPolish(every=200, above=0.9, below=0.99)`` with ``--polish-steps`` (50) and ``--polish-lr`` (0.005). Its state is then copied into a second
search, and the two finish side by side, taking turns in 30-second slices of their own search time
(so a change of machine load hits both alike) until each has spent ``--endgame-minutes`` more:

- ``evolve``: the same search, going on as it was;
- ``endgame``: the same, but polishing every generation from the copy on
  (``GradientPolish(from_seconds=...)``).

Prints the machine, each arm's evaluations, gradient images, per-class confidence and median at the
end (and at the copy), and the median after each slice; ``--out FILE`` writes the figures as JSON.
The compilation is not counted: both arms share the model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import foolbench as fb

sys.path.insert(0, str(Path(__file__).parent))
from _common import TEXTURE_CLASSES, machine, take_turns


def build(
    clf: fb.models.TorchClassifier,
    classes: list[int] | None,
    *,
    batch_size: int,
    seed: int,
    polish: fb.search.GradientPolish,
) -> fb.search.MAPElites:
    return fb.search.MAPElites(
        clf,
        fb.encodings.CPPNEncoding((3, 224, 224)),
        classes=classes,
        batch_size=batch_size,
        seed=seed,
        mutation_schedule=2.0,
        parents=fb.search.UnmetFirst(confidence=0.99),
        polish=polish,
    )


def median(search: fb.search.Evolution) -> float:
    return float(search.result().confidence.median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="search minutes per arm, endgame included")
    parser.add_argument("--endgame-minutes", type=float, default=2.0, help="the last minutes, run by both arms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classes", choices=["texture", "all"], default="texture")
    parser.add_argument("--no-compile", action="store_true", help="run the model eagerly")
    parser.add_argument("--polish-steps", type=int, default=50, help="Adam steps per polish (both arms)")
    parser.add_argument("--polish-lr", type=float, default=0.005, help="Adam's step size (both arms)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args()
    if not 0 < args.endgame_minutes < args.minutes:
        parser.error(f"--endgame-minutes must be in (0, --minutes={args.minutes:g}), got {args.endgame_minutes:g}")
    print(machine(args.device))
    clf = fb.models.efficientnet_lite0(device=args.device).replace(compile=not args.no_compile)
    classes = TEXTURE_CLASSES if args.classes == "texture" else None
    t = time.perf_counter()
    clf.log_probs(torch.zeros(args.batch_size, 3, 224, 224, device=args.device))
    print(f"model ready in {time.perf_counter() - t:.0f} s (not counted)")

    branch, end = 60 * (args.minutes - args.endgame_minutes), 60 * args.minutes
    interleaved = fb.search.GradientPolish(every=200, steps=args.polish_steps, lr=args.polish_lr, above=0.9, below=0.99)
    base = build(clf, classes, batch_size=args.batch_size, seed=args.seed, polish=interleaved)
    base.run(max_seconds=branch, target_confidence=0.99, progress=False)
    at_branch, branch_gradient = base.result(), base.gradient_images
    print(
        f"at the copy: {base.evaluations:,} evaluations, {base.gradient_images:,} gradient images, "
        f"{base.seconds:.0f} s; median {float(at_branch.confidence.median()):.4f}; "
        f">= 99%: {int(at_branch.fooled(0.99).sum())}/{len(at_branch.classes)}"
    )
    endgame = build(clf, classes, batch_size=args.batch_size, seed=args.seed, polish=interleaved)
    endgame.load_state_dict(base.state_dict())
    # the branch: from here on this copy polishes every generation (set after loading, since a checkpoint
    # of a search with an endgame is refused by one without it)
    endgame.polish = fb.search.GradientPolish(**{**interleaved.config(), "from_seconds": base.seconds})
    arms = {"evolve": base, "endgame": endgame}
    timeline: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
    take_turns(
        arms,
        end,
        after_slice=lambda name, search: timeline[name].append((search.seconds, median(search))),
    )
    names = clf.class_names or []
    figures: dict[str, object] = {
        "machine": machine(args.device),
        "seed": args.seed,
        "minutes": args.minutes,
        "endgame_minutes": args.endgame_minutes,
        "at_branch": {
            "evaluations": at_branch.evaluations,
            "median": float(at_branch.confidence.median()),
            "gradient_images": branch_gradient,
            "confidence": at_branch.confidence.tolist(),
        },
    }
    results = {name: search.result() for name, search in arms.items()}
    print(f"{'class':<28}{'at copy':>10}" + "".join(f"{name:>10}" for name in arms))
    for i, c in enumerate(at_branch.classes.tolist()):
        label = f"{c:4d} {names[c] if names else ''}"
        row = f"{label:<28}{float(at_branch.confidence[i]):>10.4f}"
        print(row + "".join(f"{float(r.confidence[i]):>10.4f}" for r in results.values()))
    for name, search in arms.items():
        r = results[name]
        conf = r.confidence
        line = (
            f"{name}: {r.evaluations:,} evaluations (+{r.evaluations - at_branch.evaluations:,}), "
            f"{search.gradient_images:,} gradient images (+{search.gradient_images - branch_gradient:,}), "
            f"{search.seconds:.0f} s; median {float(conf.median()):.4f}; >= 99%: {int(r.fooled(0.99).sum())}/"
            f"{len(conf)}; mean {float(conf.mean()):.4f}"
        )
        print(line)
        print(f"  median after each slice: {', '.join(f'{s:.0f} s {m:.4f}' for s, m in timeline[name])}")
        figures[name] = {
            "evaluations": r.evaluations,
            "gradient_images": search.gradient_images,
            "seconds": search.seconds,
            "median": float(conf.median()),
            "fooled_99": int(r.fooled(0.99).sum()),
            "mean": float(conf.mean()),
            "confidence": conf.tolist(),
            "timeline": timeline[name],
        }
    gain = statistics.fmean(
        float(a - b) for a, b in zip(results["endgame"].confidence, results["evolve"].confidence, strict=True)
    )
    print(
        f"endgame - evolve: median {float(results['endgame'].confidence.median() - results['evolve'].confidence.median()):+.4f}, mean per class {gain:+.4f}"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
