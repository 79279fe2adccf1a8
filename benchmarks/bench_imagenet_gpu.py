"""The paper's ImageNet run at its budget: MAP-Elites + CPPN over all 1,000 EfficientNet-Lite0 classes.

``python benchmarks/bench_imagenet_gpu.py [--max-evaluations 2000000] [--max-seconds S] [--precision bf16]
[--verify] [--batch-size 512] [--encoding cppn|direct] [--strength S] [--search map-elites|random]
[--checkpoint FILE] [--out DIR] [--quick]``

``--strength S`` gives the CPPN search a constant mutation strength (2 beat the default 1 on the CPU
proxy, docs/methods/evolution.md). ``--encoding direct`` runs the paper's other encoding (pixels, with
the mutation strength halved every 1,000 generations as in the ``paper-imagenet`` suite); ``--search
random`` is the equal-budget baseline
(:class:`~foolbench.search.RandomSearch`: fresh random genomes every generation, each class's best kept).
``--checkpoint FILE`` resumes a run stopped by ``--max-seconds`` (which counts the search time of every
run so far) or a killed process, bit for bit.

Prints issue 16's table row (evaluations, search seconds, median confidence over the classes and the
number of classes at >= 50 / 90 / 99 / 99.6 / 99.99%) at milestones: 777,216 and 1,922,560 evaluations
(the two rows foolbench 0.1.0 was measured at on an H200), every 500,000, and at the end. Confidences are
the float32 model's whatever ``--precision`` the search ran at (:meth:`~foolbench.search.MAPElites.result`
re-scores the elites). With ``--out`` it writes, after every milestone, ``archive.pt`` (CPPN only: the elites'
genomes, ``search.archive.state_dict()``, to render the images anywhere; with ``--islands K`` it holds K x 1,000
niches, island by island), ``confidence.json`` (per-class
confidences, the milestone rows and the median over the classes every 10 generations) and ``best.png``
(the 64 most confident images).

On a CUDA machine this is the 2M-evaluation part of the ``paper-imagenet`` suite with the fast path on;
``--quick`` runs it small on the CPU (64x64 images, batch 16, 10 seconds): a smoke test, not figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import foolbench as fb

THRESHOLDS = (0.5, 0.9, 0.99, 0.996, 0.9999)
MILESTONES = (777_216, 1_922_560)


def row(res: fb.search.FoolingResult, wall: float) -> dict[str, object]:
    conf = res.confidence
    out: dict[str, object] = {
        "evaluations": res.evaluations,
        "search_seconds": round(res.seconds, 1),
        "wall_seconds": round(wall, 1),
        "median": round(float(conf.median()), 6),
        "mean": round(float(conf.mean()), 6),
    }
    out.update({f">={100 * t:g}%": int((conf >= t).sum()) for t in THRESHOLDS})
    return out


def line(r: dict[str, object], classes: int) -> str:
    counts = ", ".join(f"{k} {r[k]}" for k in r if str(k).startswith(">="))
    return (
        f"{r['evaluations']:,} evaluations, {r['search_seconds']} s searching ({r['wall_seconds']} s wall this call): "
        f"median over {classes} classes {100 * float(r['median']):.2f}% (mean {100 * float(r['mean']):.2f}%); "
        f"classes {counts}"
    )


def save(search: fb.search.MAPElites, res: fb.search.FoolingResult, rows: list[dict[str, object]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(search.encoding, fb.encodings.CPPNEncoding):  # direct genomes are the images: 600 MB
        torch.save(search.archive.state_dict(), out / "archive.pt")
    hist = res.history
    keep = slice(None, None, 10)
    (out / "confidence.json").write_text(
        json.dumps(
            {
                "settings": {k: str(v) for k, v in res.settings.items()},
                "device": torch.cuda.get_device_name(0) if search.device.type == "cuda" else "cpu",
                "torch": torch.__version__,
                "classes": res.classes.tolist(),
                "confidence": [round(float(c), 6) for c in res.confidence],
                "found_at": res.found_at.tolist(),
                "rows": rows,
                "history_evaluations": hist.evaluations[keep].tolist(),
                "history_median": [round(float(m), 5) for m in hist.median[keep]],
            }
        )
    )
    res.most_confident(64).save_png(out / "best.png", columns=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--max-evaluations", type=int, default=2_000_000)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="search seconds (the step's own time)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="bf16")
    parser.add_argument("--verify", action="store_true", help="MAPElites(verify=True): float32 checks of improvers")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoding", choices=("cppn", "direct"), default="cppn")
    parser.add_argument(
        "--strength", type=float, default=None, help="constant mutation strength of a CPPN search (default: 1)"
    )
    parser.add_argument(
        "--near-confidence", type=float, default=None,
        help="fb.search.NearStrength: children of elites at or above it mutated at --near-strength",
    )  # fmt: skip
    parser.add_argument("--near-strength", type=float, default=1.0, help="their mutation strength (default 1)")
    parser.add_argument(
        "--near-refine", type=float, default=None,
        help="refine those children at this scale instead (CPPN weights only, small steps: NearStrength(refine=))",
    )  # fmt: skip
    parser.add_argument(
        "--polish-every",
        type=int,
        default=0,
        help="fb.search.GradientPolish every this many generations (elites in [90%%, 99%%), 50 steps; 0: never)",
    )
    parser.add_argument(
        "--polish-most",
        type=int,
        default=64,
        help="at most this many elites per polish (its autograd graph holds every node's activations)",
    )
    parser.add_argument(
        "--polish-from-seconds",
        type=float,
        default=None,
        help="with --polish-every: from this many search seconds on, polish every generation (an endgame)",
    )
    parser.add_argument(
        "--islands", type=int, default=1, help="MAPElites(islands=): independent archives, the best over them reported"
    )
    parser.add_argument("--search", choices=("map-elites", "random"), default="map-elites")
    parser.add_argument("--checkpoint", type=Path, default=None, help="resume from / save to this file")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="small on the CPU: a smoke test, not figures")
    args = parser.parse_args()
    device = "cpu" if args.quick or not torch.cuda.is_available() else "cuda"
    size, batch = (64, 16) if args.quick else (224, args.batch_size)
    precision = "fp32" if device == "cpu" and args.precision != "bf16" else args.precision
    if device == "cpu":
        fb.tune_malloc()
    max_seconds = 10.0 if args.quick else args.max_seconds
    clf = fb.models.efficientnet_lite0(device=device, image_size=size, precision=precision)
    search: fb.search.MAPElites
    if args.encoding == "cppn":
        enc: fb.encodings.Encoding = fb.encodings.CPPNEncoding((3, size, size))
        schedule: float | fb.search.MutationSchedule | None = args.strength
    else:  # the paper-imagenet suite's direct search: the MNIST recipe's rates, strength halved every 1,000 generations
        enc = fb.encodings.DirectEncoding((3, size, size), mutation_rate=0.02, eta=1.0)
        if args.strength is not None:
            parser.error("--strength is for the CPPN search (the direct one decays from 1)")
        schedule = fb.search.StepDecay(factor=0.5, every=1000)
    if args.near_confidence is not None:
        if args.search == "random" or args.encoding == "direct":
            parser.error("--near-confidence is for the MAP-Elites CPPN search")
        if args.near_refine is not None and args.near_strength != 1.0:
            parser.error("give --near-strength or --near-refine, not both")
        if args.near_refine is not None and not 0 < args.near_refine <= 1:
            parser.error(f"--near-refine must be in (0, 1], got {args.near_refine}")
        near = {"near_strength": args.near_strength} if args.near_refine is None else {"refine": args.near_refine}
        schedule = fb.search.NearStrength(schedule, near_confidence=args.near_confidence, **near)
    elif args.near_strength != 1.0 or args.near_refine is not None:
        parser.error("--near-strength and --near-refine need --near-confidence")
    polish = None
    if args.polish_every:
        if args.search == "random":
            parser.error("--polish-every is for the MAP-Elites search")
        polish = fb.search.GradientPolish(
            every=args.polish_every, below=0.99, most=args.polish_most, from_seconds=args.polish_from_seconds
        )
    elif args.polish_from_seconds is not None:
        parser.error("--polish-from-seconds needs --polish-every")
    if args.islands < 1 or (args.islands > 1 and args.search == "random"):
        parser.error(f"--islands must be >= 1, and 1 for random sampling, got {args.islands}")
    if args.search == "random":
        search = fb.search.RandomSearch(clf, enc, batch_size=batch, seed=args.seed, verify=args.verify)
    else:
        search = fb.search.MAPElites(
            clf,
            enc,
            batch_size=batch,
            seed=args.seed,
            verify=args.verify,
            mutation_schedule=schedule,
            polish=polish,
            islands=args.islands,
        )
    card = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    near_label = f"{args.near_strength:g}" if args.near_refine is None else f"refined at {args.near_refine:g}"
    what = "MAP-Elites" if args.search == "map-elites" else "random sampling"
    print(
        f"{what} + {args.encoding}{'' if args.strength is None else f' (strength {args.strength:g})'}"
        f"{'' if args.near_confidence is None else f' (>= {args.near_confidence:g}: {near_label})'}, "
        f"{clf.num_classes} classes, {size}x{size}, batch {batch}, {precision}"
        f"{' + verify' if args.verify else ''}{'' if polish is None else f', {polish!r}'}"
        f"{'' if args.islands == 1 else f', {args.islands} islands'}, seed {args.seed}; device {card}; torch {torch.__version__}",
        flush=True,
    )
    step = 500_000 if not args.quick else 2_000
    stops = sorted({*MILESTONES, *range(step, args.max_evaluations, step), args.max_evaluations})
    stops = [s for s in stops if s <= args.max_evaluations]
    if args.checkpoint is not None and args.checkpoint.exists():
        search.load_checkpoint(args.checkpoint)
        print(f"resumed from {args.checkpoint} at {search.evaluations:,} evaluations", flush=True)
    rows: list[dict[str, object]] = []
    earlier = args.out / "confidence.json" if args.out is not None else None
    if search.evaluations and earlier is not None and earlier.is_file():  # the rows of the runs before
        rows = [r for r in json.loads(earlier.read_text())["rows"] if int(r["evaluations"]) <= search.evaluations]
    start = time.perf_counter()
    for stop in stops:
        if search.evaluations >= stop:  # resumed from a checkpoint past this milestone
            continue
        res = search.run(max_evaluations=stop, max_seconds=max_seconds, progress=False, checkpoint=args.checkpoint)
        if rows and rows[-1]["evaluations"] == res.evaluations:  # nothing new since the last row (a resume)
            rows.pop()
        rows.append(row(res, time.perf_counter() - start))
        rate = res.evaluations / max(res.seconds, 1e-9)
        verified = f", {search.verifications:,} float32 checks" if args.verify else ""
        print(f"{line(rows[-1], len(res.classes))}; {rate:,.0f} eval/s{verified}", flush=True)
        if args.out is not None:
            save(search, res, rows, args.out)
        if search.seconds >= max_seconds:
            print(f"stopped by --max-seconds {max_seconds:g} before {stop:,} evaluations", flush=True)
            break


if __name__ == "__main__":
    main()
