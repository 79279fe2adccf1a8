"""One small function per command: parse, call one library function, print what it did."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable
from typing import Any

from foolbench.cli._main import add_command, add_model_options, add_run_options, classes, finish
from foolbench.search import MNIST_RECIPE

_NOT_LIBRARY = {"func", "flags", "threads", "no_progress"}


def _kwargs(args: argparse.Namespace, function: Callable[..., Any], **extra: Any) -> dict[str, Any]:
    """The parsed options that ``function`` takes as keyword arguments (the flags are named like them)."""
    accepted = inspect.signature(function).parameters
    values = {k: v for k, v in vars(args).items() if k in accepted and k not in _NOT_LIBRARY and k != "out"}
    if "progress" in accepted and hasattr(args, "no_progress"):
        values["progress"] = not args.no_progress
    return {**values, **extra}


def _percent(share: float) -> str:
    """``100 * share`` exactly, as short text: ``:g`` printed a target of 0.9999999 as 100%."""
    from decimal import Decimal

    return format((Decimal(repr(float(share))) * 100).normalize(), "f")


def _print_search(summary: dict[str, Any], target: float) -> None:
    results = summary["results"]
    reached = sum(row["confidence"] >= target for row in results["per_class"])
    reused = " (kept: same settings already computed; --fresh recomputes)" if summary.get("reused") else ""
    print(
        f"{reached}/{results['classes']} classes at >= {_percent(target)}% after {results['evaluations']:,} "
        f"evaluations in {results['seconds']:.1f} s; median confidence {results['median_confidence']:.6f}{reused}"
    )


def models(args: argparse.Namespace) -> int:
    """``foolbench models``: list the zoo."""
    from foolbench.models import zoo

    for info in zoo().values():
        shape = "x".join(map(str, info.input_shape))
        extra = f"  [needs foolbench[{info.extra}]]" if info.extra else ""
        print(f"{info.name:<20} {info.dataset:<9} {shape:<10} {info.num_classes:>5} classes  {info.description}{extra}")
    return 0


def evolve(args: argparse.Namespace) -> int:
    """``foolbench demo`` and ``foolbench evolve``: MAP-Elites through :func:`foolbench.search.run_evolution`."""
    from foolbench.search import run_evolution

    kwargs = _kwargs(args, run_evolution)
    if args.max_evaluations is None:  # not given: the command's budget, or none beside --generations
        kwargs["max_evaluations"] = args.default_max_evaluations if args.generations is None else None
    if kwargs.get("title"):  # the demo's report title names the model and encoding it ran with
        kwargs["title"] = kwargs["title"].format(model=args.model, encoding=args.encoding)
    if kwargs.get("precision") == "auto":  # say the choice before a long run (the summary records it)
        from foolbench import _checks
        from foolbench.models import auto_precision

        used = auto_precision(_checks.torch_device("device", kwargs.get("device")))
        why = "bf16 units found" if used == "bf16" else "no bf16 units on this device: bf16 would be slower"
        if args.verify and used == "fp32":
            why += "; --verify has no bf16 scores to re-score"
        verified = " with --verify" if args.verify and used == "bf16" else ""
        print(f"--precision auto: {used}{verified} ({why})", flush=True)
    summary = run_evolution(args.out, **kwargs)
    _print_search(summary, args.target_confidence)
    print(f"wrote {args.out}/images.png, summary.json, report.md")
    return 0


def ascend(args: argparse.Namespace) -> int:
    """``foolbench ascend``: gradient ascent through :func:`foolbench.search.run_ascent`."""
    from foolbench.search import run_ascent

    summary = run_ascent(args.out, **_kwargs(args, run_ascent))
    _print_search(summary, args.target_confidence)
    print(f"wrote {args.out}/images.png, summary.json, report.md")
    return 0


def uap(args: argparse.Namespace) -> int:
    """``foolbench uap``: a universal perturbation through :func:`foolbench.search.run_uap`."""
    from foolbench.search import run_uap

    summary = run_uap(args.out, **_kwargs(args, run_uap))
    r = summary["results"]
    reused = " (kept: same settings already computed; --fresh refits)" if summary.get("reused") else ""
    print(
        f"held-out fooling rate {r['held_out_fooling_rate']:.3f} on {r['held_out_images']} digits "
        f"(fitting {r['fitting_fooling_rate']:.3f}){reused}; wrote {args.out}/summary.json"
    )
    return 0


def bench(args: argparse.Namespace) -> int:
    """``foolbench bench``: a scorecard through :func:`foolbench.bench.run_suite`."""
    from foolbench.bench import run_suite
    from foolbench.errors import InvalidArgumentError

    if (args.suite is None) == (args.config is None):
        raise InvalidArgumentError("bench needs exactly one of --suite NAME or --config FILE.toml")
    executor = None
    for flag, value in (("--ray-cpus", args.ray_cpus), ("--ray-gpus", args.ray_gpus)):
        if args.ray is None and value is not None:
            raise InvalidArgumentError(f"{flag} applies with --ray only (cells then run as Ray tasks), got {value:g}")
    if args.ray is not None:
        from foolbench.distributed import RayExecutor

        cpus, gpus = 1.0 if args.ray_cpus is None else args.ray_cpus, 0.0 if args.ray_gpus is None else args.ray_gpus
        from foolbench.distributed._executor import check_cell_device

        # a cell computes on --device whatever GPUs Ray assigned it: refused before any cluster is joined
        check_cell_device(args.device, gpus, device_name="--device", gpus_name="--ray-gpus")
        # the cells run with --threads torch threads (0: Ray's default, --ray-cpus rounded down)
        executor = RayExecutor(address=args.ray, num_cpus=cpus, num_gpus=gpus, threads=args.threads or None)
    results = run_suite(
        args.suite or args.config,
        out=args.out,
        device=args.device,
        progress=not args.no_progress,
        executor=executor,
        fresh=args.fresh,
    )
    print(f"suite {results['suite']}: {len(results['cells'])} cells in {results['seconds']:.0f} s")
    for claim in results["claims"]:
        print(f"- {claim['claim']}: published {claim['published']}; measured {claim['measured']}")
    print(f"wrote {args.out}/results.json, report.md")
    if results["failed"]:  # the finished cells are kept; a script or CI must still see that some failed
        for f in results["failed"]:
            print(
                f"foolbench: cell failed: {f['model']} / {f['defense']} / {f['method']}: {f['error']}", file=sys.stderr
            )
        print(f"foolbench: {len(results['failed'])} cell(s) failed (rerun to retry them)", file=sys.stderr)
        return 1
    return 0


def _evolve_options(p: argparse.ArgumentParser, *, max_evaluations: int) -> None:
    add_model_options(p)
    p.add_argument(
        "--encoding", choices=("direct", "cppn"), default="direct", help="genome encoding: pixels or CPPN networks"
    )
    p.add_argument(
        "--classes", type=classes, default=None, help="comma-separated class indices or names (default: all)"
    )
    p.add_argument(
        "--max-evaluations",
        type=int,
        default=None,
        help=f"evaluation budget (default: {max_evaluations:,} without --generations, no limit with it); "
        "with both, the run stops at whichever it reaches first",
    )
    p.add_argument(
        "--generations",
        type=int,
        default=None,
        help="generation budget (default: no limit, the evaluation budget stops the run)",
    )
    p.set_defaults(default_max_evaluations=max_evaluations)
    p.add_argument(
        "--target-confidence",
        type=float,
        default=0.9999,
        help="stop once every class reaches it; map-elites breeds from the classes below it first",
    )
    p.add_argument(
        "--parents-confidence",
        type=float,
        default=None,
        help="map-elites: breed from the classes below this confidence first (default: --target-confidence; "
        "0.9999 gives foolbench 0.1.0's parents at any target)",
    )
    p.add_argument("--batch-size", type=int, default=MNIST_RECIPE.batch_size, help="genomes per generation")
    p.add_argument(
        "--mutation-rate",
        type=float,
        default=None,
        help=(
            "direct only: mutations drawn per pixel, with replacement: about 1 - exp(-rate) of the pixels change "
            f"(default: {MNIST_RECIPE.mutation_rate:g})"
        ),
    )
    p.add_argument("--eta", type=float, default=None, help="polynomial mutation index (default: direct 1, cppn 15)")
    p.add_argument("--max-nodes", type=int, default=None, help="cppn only: node slots per genome (default: 32)")
    p.add_argument("--max-connections", type=int, default=None, help="cppn only: connections per genome (default: 128)")
    p.add_argument(
        "--method",
        choices=("map-elites", "random-search"),
        default="map-elites",
        help="map-elites, or random-search: fresh random genomes every generation (the equal-budget baseline)",
    )
    p.add_argument(
        "--strength",
        type=float,
        default=1.0,
        help="map-elites: constant mutation strength (CPPN on EfficientNet-Lite0: 2 did better)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16", "auto"),
        default="fp32",
        help="score children under autocast (reported confidences stay float32); auto: bf16 where the device "
        "has bf16 units (GPUs from compute capability 8, CPUs with AVX512-BF16 or AMX), else fp32",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="with bf16/fp16 (or auto picking bf16): re-score in float32 the children that beat an elite",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="score through torch.compile with the weights frozen in (EfficientNet-Lite0: 1.4-1.7x on 2-core CPUs, "
        "after 10-30 s compiling); reported confidences stay the uncompiled model's",
    )
    p.add_argument(
        "--polish",
        action="store_true",
        help="map-elites: every 200 generations, 50 gradient steps on the weights (cppn) or pixels (direct) of "
        "the elites between 90%% and the parents' level (--parents-confidence, default the target; from 0 when "
        "that level is 90%% or less) (white box: fb.search.GradientPolish)",
    )
    p.add_argument(
        "--islands",
        type=int,
        default=1,
        help="map-elites: independent archives, the best over them reported per class (a class stuck on one "
        "lineage gets others; 1: the paper's single archive)",
    )
    p.add_argument(
        "--checkpoint", default=None, help="checkpoint file, resumed when present (default: OUT/checkpoint.pt)"
    )
    p.add_argument("--checkpoint-every", type=int, default=25, help="generations between checkpoints")
    p.add_argument("--fresh", action="store_true", help="delete the checkpoint and outputs in OUT and start over")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add every command to the ``foolbench`` parser."""
    for add in (_models_command, _evolution_commands, _ascend_command, _uap_command, _bench_command):
        add(sub)


def _models_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = add_command(sub, "models", models, help="list the model zoo")
    finish(p)


def _evolution_commands(sub: argparse._SubParsersAction[Any]) -> None:
    p = add_command(
        sub,
        "demo",
        evolve,
        help="fool the shipped MNIST LeNet on all 10 digits (seconds on a laptop CPU)",
        description="Evolve fooling images for the shipped MNIST LeNet (or another --model) with the tuned MNIST recipe "
        f"(batch {MNIST_RECIPE.batch_size}, mutation rate {MNIST_RECIPE.mutation_rate:g}, eta {MNIST_RECIPE.eta:g}). "
        "Resumes from OUT/checkpoint.pt when it exists.",
    )
    _evolve_options(p, max_evaluations=100_000)
    add_run_options(p, out="out/demo")
    p.set_defaults(title="foolbench demo: evolved fooling images for {model} ({encoding} encoding)")
    finish(p)

    p = add_command(
        sub,
        "evolve",
        evolve,
        help="evolve fooling images with MAP-Elites",
        description="Evolve fooling images with MAP-Elites. Resumes from the checkpoint when it exists "
        "(a checkpoint of other settings is refused; --fresh starts over).",
    )
    _evolve_options(p, max_evaluations=30_000)
    add_run_options(p, out="out/evolve")
    finish(p)


def _ascend_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = add_command(
        sub,
        "ascend",
        ascend,
        help="gradient-ascent fooling images from noise (white box)",
        description="Gradient-ascent fooling images from noise (white box). No checkpoint: a rerun into an OUT "
        "that holds the outputs of the same settings keeps them instead of recomputing (--fresh recomputes).",
    )
    add_model_options(p)
    p.add_argument(
        "--classes", type=classes, default=None, help="comma-separated class indices or names (default: all)"
    )
    p.add_argument("--steps", type=int, default=500, help="gradient steps")
    p.add_argument("--lr", type=float, default=0.01, help="step size, relative to the input range")
    p.add_argument("--l2-decay", type=float, default=0.0, help="per-step shrink towards mid-grey, in [0, 1)")
    p.add_argument("--blur-every", type=int, default=0, help="blur every this many steps (0: never)")
    p.add_argument(
        "--blur-sigma", type=float, default=None, help="Gaussian blur sigma in pixels (default 0.5; needs --blur-every)"
    )
    p.add_argument("--jitter", type=int, default=0, help="largest random shift in pixels before each step")
    p.add_argument("--start", choices=("noise", "zeros"), default="noise", help="start images")
    p.add_argument("--target-confidence", type=float, default=0.9999, help="an image stops at this confidence")
    p.add_argument("--fresh", action="store_true", help="recompute even when OUT holds the same run")
    add_run_options(p, out="out/ascend")
    finish(p)


def _uap_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = add_command(
        sub,
        "uap",
        uap,
        help="fit a universal adversarial perturbation on real MNIST digits",
        description="Fit a universal perturbation on real MNIST digits, measure it on held-out digits. "
        "No checkpoint: a rerun into an OUT that holds the outputs of the same settings keeps them "
        "instead of refitting (--fresh refits).",
    )
    p.add_argument("--model", default="lenet-mnist", help="a zoo model taking 1x28x28 digits")
    p.add_argument("--eps", type=float, default=0.3, help="radius of the perturbation")
    p.add_argument("--norm", choices=("inf", "2"), default="inf", help="norm of the radius")
    p.add_argument("--method", choices=("sgd", "deepfool"), default="sgd", help="fitting algorithm")
    p.add_argument("--delta", type=float, default=0.2, help="stop once the fooling rate reaches 1 - delta")
    p.add_argument("--max-passes", type=int, default=20, help="passes over the fitting digits")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size")
    p.add_argument("--fit", type=int, default=500, help="fitting digits (from the train split)")
    p.add_argument("--held-out", type=int, default=1000, help="held-out digits (from the test split)")
    p.add_argument("--fresh", action="store_true", help="refit even when OUT holds the same fit")
    add_run_options(p, out="out/uap")
    finish(p)


def _bench_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = add_command(sub, "bench", bench, help="run a scorecard suite: models x defenses x methods")
    p.add_argument(
        "--suite",
        default=None,
        help="a built-in suite: quick (MNIST, minutes), paper, or paper-imagenet (1,000 classes, a GPU); or --config",
    )
    p.add_argument("--config", default=None, help="a suite TOML file (see the docs for its keys)")
    add_run_options(p, out="out/bench", seed=False, out_help="output folder; finished cells there are reused")
    p.add_argument("--fresh", action="store_true", help="recompute every cell, model and checkpoint in OUT")
    p.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="ADDRESS",
        help="run the cells as Ray tasks (needs foolbench[ray]): 'auto' (RAY_ADDRESS, a running cluster, "
        "else a local one) or HOST:PORT",
    )
    p.add_argument(
        "--ray-cpus",
        type=float,
        default=None,
        help="with --ray: CPUs per cell (default: 1); each cell runs with --threads torch threads "
        "(--threads 0: this count rounded down)",
    )
    p.add_argument(
        "--ray-gpus", type=float, default=None, help="with --ray: GPUs per cell, a fraction shares one (default: 0)"
    )
    p.epilog = (
        "A suite file is code: its factories ('module:function', resolved in the file's folder, then the "
        "current directory) are imported and run, like a Python script. Run only suite files you trust."
    )
    finish(p, aliases={"num_cpus": "ray_cpus", "num_gpus": "ray_gpus"})  # RayExecutor's names for them
