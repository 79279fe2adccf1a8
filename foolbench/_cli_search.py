"""``foolbench demo`` and ``foolbench evolve`` (private; registered by :mod:`foolbench.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from foolbench import _io
from foolbench.errors import InvalidArgumentError

# The tuned recipe for direct encoding on MNIST (see benchmarks/bench_evolution.py):
# small generations, sparse but large pixel moves, parents focused on unmet classes.
DEMO_RECIPE = {"batch_size": 64, "mutation_rate": 0.02, "eta": 1.0}


def _classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InvalidArgumentError(f"--classes must be comma-separated class indices, got {text!r}") from None


def _encoding(args: argparse.Namespace, shape: tuple[int, int, int]) -> Any:
    from foolbench.encodings import CPPNEncoding, DirectEncoding

    if args.encoding == "cppn":
        return CPPNEncoding(
            shape,
            max_nodes=args.max_nodes,
            max_connections=args.max_connections,
            eta=15.0 if args.eta is None else args.eta,
        )
    return DirectEncoding(
        shape, mutation_rate=args.mutation_rate, eta=DEMO_RECIPE["eta"] if args.eta is None else args.eta
    )


def _load(args: argparse.Namespace) -> Any:
    from foolbench.models import load_model

    kwargs: dict[str, Any] = {"device": args.device}
    if args.model == "efficientnet-lite0" and args.image_size is not None:
        kwargs["image_size"] = args.image_size
    return load_model(args.model, **kwargs)


def _evolve(args: argparse.Namespace, *, title: str) -> int:
    from foolbench.search import MAPElites

    out = Path(args.out)
    clf = _load(args)
    encoding = _encoding(args, clf.input_shape)
    search = MAPElites(clf, encoding, classes=_classes(args.classes), batch_size=args.batch_size, seed=args.seed)
    checkpoint = out / "checkpoint.pt" if args.checkpoint is None else Path(args.checkpoint)
    result = search.run(
        max_evaluations=args.max_evaluations,
        generations=args.generations,
        target_confidence=args.target_confidence,
        progress=not args.no_progress,
        checkpoint=checkpoint,
        checkpoint_every=args.checkpoint_every,
    )
    paths = result.save(out, title=title)
    fooled = int(result.fooled(args.target_confidence or 0.9999).sum())
    print(
        f"{fooled}/{len(result.classes)} classes at >= {100 * (args.target_confidence or 0.9999):g}% "
        f"after {result.evaluations:,} evaluations in {result.seconds:.1f} s; "
        f"median confidence {float(result.confidence.median()):.6f}"
    )
    print(f"wrote {paths['png']}, {paths['json']}, {paths['markdown']}")
    return 0


def _common(p: argparse.ArgumentParser, *, model: str, max_evaluations: int | None, out: str) -> None:
    p.add_argument("--model", default=model, help=f"zoo model name (default {model}); see `foolbench models`")
    p.add_argument(
        "--encoding",
        choices=("direct", "cppn"),
        default="direct",
        help="genome encoding: direct pixels or CPPN networks (default direct)",
    )
    p.add_argument("--classes", default=None, help="comma-separated target classes (default: all)")
    p.add_argument("--max-evaluations", type=int, default=max_evaluations)
    p.add_argument("--generations", type=int, default=None)
    p.add_argument("--target-confidence", type=float, default=0.9999)
    p.add_argument("--batch-size", type=int, default=DEMO_RECIPE["batch_size"])
    p.add_argument("--mutation-rate", type=float, default=DEMO_RECIPE["mutation_rate"], help="direct: share of pixels")
    p.add_argument("--eta", type=float, default=None, help="polynomial mutation index (default: direct 1, cppn 15)")
    p.add_argument("--max-nodes", type=int, default=32, help="cppn: node slots per genome")
    p.add_argument("--max-connections", type=int, default=128, help="cppn: connections per genome")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=None, help="raw image side for ImageNet models")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cpu)")
    p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default OUT/checkpoint.pt); resumes if present")
    p.add_argument("--checkpoint-every", type=int, default=25, help="generations between checkpoints")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("demo", help="fool the shipped MNIST LeNet on all 10 digits (about 3 s on a laptop CPU)")
    _common(p, model="lenet-mnist", max_evaluations=100_000, out="out/demo")
    p.set_defaults(func=lambda a: _evolve(a, title="foolbench demo: evolved fooling images for LeNet-MNIST"))
    p = sub.add_parser("evolve", help="evolve fooling images with MAP-Elites")
    _common(p, model="lenet-mnist", max_evaluations=30_000, out="out/evolve")
    p.set_defaults(func=lambda a: _evolve(a, title=f"Evolved fooling images for {a.model} ({a.encoding} encoding)"))


def _ascend(args: argparse.Namespace) -> int:
    from foolbench.search import GradientAscent

    out = Path(args.out)
    clf = _load(args)
    search = GradientAscent(
        clf,
        steps=args.steps,
        lr=args.lr,
        l2_decay=args.l2_decay,
        blur_every=args.blur_every,
        blur_sigma=args.blur_sigma,
        jitter=args.jitter,
        start=args.start,
        seed=args.seed,
    )
    result = search.run(_classes(args.classes), target_confidence=args.target_confidence)
    paths = result.save(out, title=f"Gradient-ascent fooling images for {args.model}")
    print(
        f"{int(result.fooled(args.target_confidence).sum())}/{len(result.classes)} classes at >= "
        f"{100 * args.target_confidence:g}% in {result.seconds:.1f} s; wrote {paths['png']}, {paths['json']}"
    )
    return 0


def _uap(args: argparse.Namespace) -> int:
    import torch

    from foolbench.models import mnist_digits
    from foolbench.search import UniversalPerturbation, fooling_rate

    out = Path(args.out)
    clf = _load(args)
    if clf.input_shape != (1, 28, 28):
        raise InvalidArgumentError(
            f"foolbench uap fits on real MNIST digits; --model must take 1x28x28 inputs, "
            f"got {args.model} with {clf.input_shape}"
        )
    fit = mnist_digits("train", limit=args.fit)[0]
    held = mnist_digits("test", limit=args.held_out)[0]
    uap = UniversalPerturbation(
        eps=args.eps,
        norm=args.norm,
        method=args.method,
        delta=args.delta,
        max_passes=args.max_passes,
        batch_size=args.batch_size,
        seed=args.seed,
    ).fit(clf, fit)
    held_rate = fooling_rate(clf, held, uap.perturbation)
    v = uap.perturbation.cpu()
    shown = (v - v.min()) / (v.max() - v.min()).clamp_min(1e-12)
    perturbed = (held[:9] + v).clamp(0, 1)
    preds = clf.predict(perturbed).tolist()
    _io.save_grid(
        torch.cat([shown[None], perturbed]), ["perturbation"] + [f"-> {p}" for p in preds], out / "images.png"
    )
    _io.save_torch(out / "perturbation.pt", {"perturbation": v, "eps": uap.eps, "norm": uap.norm})
    summary = {
        "model": args.model,
        "method": uap.method,
        "eps": uap.eps,
        "norm": uap.norm,
        "passes": uap.passes,
        "seconds": round(uap.seconds, 3),
        "fitting_images": int(fit.shape[0]),
        "fitting_fooling_rate": uap.fooling_rate,
        "held_out_images": int(held.shape[0]),
        "held_out_fooling_rate": held_rate,
        "history": list(uap.history),
    }
    _io.write_json(out / "summary.json", summary)
    _io.write_text(
        out / "report.md",
        "\n".join(
            [
                f"# Universal perturbation for {args.model}",
                "",
                f"{uap.method}, L-{uap.norm} eps = {uap.eps:g}, {uap.passes} passes in {uap.seconds:.1f} s.",
                "",
                "| images | fooling rate |",
                "|---|---:|",
                f"| fitting ({fit.shape[0]} real digits) | {uap.fooling_rate:.3f} |",
                f"| held out ({held.shape[0]} real digits) | {held_rate:.3f} |",
                "",
                "![perturbation and perturbed digits](images.png)",
                "",
            ]
        ),
    )
    print(
        f"held-out fooling rate {held_rate:.3f} on {held.shape[0]} digits (fitting {uap.fooling_rate:.3f}); "
        f"wrote {out / 'summary.json'}"
    )
    return 0


def register_gradient(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("ascend", help="gradient-ascent fooling images from noise (white box)")
    p.add_argument("--model", default="lenet-mnist")
    p.add_argument("--classes", default=None, help="comma-separated target classes (default: all)")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--l2-decay", type=float, default=0.0)
    p.add_argument("--blur-every", type=int, default=0)
    p.add_argument("--blur-sigma", type=float, default=0.5)
    p.add_argument("--jitter", type=int, default=0)
    p.add_argument("--start", choices=("noise", "zeros"), default="noise")
    p.add_argument("--target-confidence", type=float, default=0.9999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="out/ascend")
    p.set_defaults(func=_ascend)
    p = sub.add_parser("uap", help="fit a universal adversarial perturbation on real MNIST digits")
    p.add_argument("--model", default="lenet-mnist")
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--norm", choices=("inf", "2"), default="inf")
    p.add_argument("--method", choices=("sgd", "deepfool"), default="sgd")
    p.add_argument("--delta", type=float, default=0.2)
    p.add_argument("--max-passes", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--fit", type=int, default=500, help="fitting digits (from the train split)")
    p.add_argument("--held-out", type=int, default=1000, help="held-out digits (from the test split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="out/uap")
    p.set_defaults(func=_uap)


def _bench(args: argparse.Namespace) -> int:
    from foolbench.bench import run_suite

    if (args.suite is None) == (args.config is None):
        raise InvalidArgumentError("bench needs exactly one of --suite NAME or --config FILE.toml")
    results = run_suite(args.suite or args.config, out=args.out, device=args.device, progress=not args.no_progress)
    out = Path(args.out)
    print(f"suite {results['suite']}: {len(results['cells'])} cells in {results['seconds']:.0f} s")
    for claim in results["claims"]:
        print(f"- {claim['claim']}: published {claim['published']}; measured {claim['measured']}")
    print(f"wrote {out / 'results.json'}, {out / 'report.md'}")
    return 0


def register_bench(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("bench", help="run a scorecard suite: models x defenses x methods")
    p.add_argument("--suite", default=None, help="a built-in suite: quick (MNIST, minutes) or paper")
    p.add_argument("--config", default=None, help="a suite TOML file (see the docs for its keys)")
    p.add_argument("--out", default="out/bench", help="output folder; finished cells there are reused")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_bench)
