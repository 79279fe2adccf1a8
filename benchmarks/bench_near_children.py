"""Which children improve an elite near the aim? ``python benchmarks/bench_near_children.py --checkpoint F``.

Takes a checkpoint of a MAP-Elites CPPN search on EfficientNet-Lite0 (224x224) and, for every elite
between ``--low`` and ``--high`` confidence, breeds ``--children`` children of that elite in each way
below, from the same generator seed, and scores them with the model. Prints, per elite and way, how many
children beat the elite and the best child's confidence, then the totals: a paired comparison of the
ways on the same elites, in one run.

- ``mutate sN``: ``CPPNEncoding.mutate(strength=N)`` (the search's children: structure and weights);
- ``refine sN``: ``CPPNEncoding.refine(scale=N)`` (only some weights, by N times a mutation's step).

A checkpoint to start from (the 10 texture classes of ``bench_cppn.py``, seed 3, about 9 minutes on a
2-core CPU)::

    foolbench evolve --model efficientnet-lite0 --encoding cppn \\
        --classes 599,489,904,646,611,741,815,539,556,794 --batch-size 16 --max-evaluations 40000 \\
        --strength 2 --target-confidence 0.99 --compile --threads 2 --seed 3 --checkpoint stalled.pt
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from _common import machine

import foolbench as fb
from foolbench import _checkpoint
from foolbench.search._evolution import _FORMAT, _VERSION

WAYS: dict[str, tuple[str, float]] = {
    "mutate s2": ("mutate", 2.0),
    "mutate s1": ("mutate", 1.0),
    "mutate s0.5": ("mutate", 0.5),
    "refine s0.1": ("refine", 0.1),
    "refine s0.03": ("refine", 0.03),
    "refine s0.01": ("refine", 0.01),
}


def children(
    enc: fb.encodings.CPPNEncoding, parents: fb.encodings.CPPNGenomes, way: str, seed: int
) -> fb.encodings.CPPNGenomes:
    kind, value = WAYS[way]
    generator = torch.Generator().manual_seed(seed)
    if kind == "mutate":
        return enc.mutate(parents, generator, strength=value)
    return enc.refine(parents, generator, scale=value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a MAP-Elites CPPN checkpoint (224x224x3)")
    parser.add_argument("--children", type=int, default=96, help="children per elite and way")
    parser.add_argument("--low", type=float, default=0.9, help="elites at or above this confidence (> 0)")
    parser.add_argument("--high", type=float, default=0.99, help="and below this one")
    parser.add_argument("--compile", action="store_true", help="score through torch.compile")
    args = parser.parse_args()
    if args.children < 1:
        parser.error(f"--children must be >= 1, got {args.children}")
    if not 0 < args.low < args.high <= 1:
        parser.error(f"need 0 < --low < --high <= 1, got {args.low} and {args.high}")
    torch.set_num_threads(2)
    print(machine("cpu"))
    state = _checkpoint.load(args.checkpoint)
    enc = fb.encodings.CPPNEncoding((3, 224, 224))  # the encoding's defaults: the search's children
    config = state.get("config") if isinstance(state, dict) else None
    if not isinstance(config, dict) or config.get("encoding") != enc.config():
        parser.error(f"{args.checkpoint} is not a search with CPPNEncoding((3, 224, 224)) at its defaults")
    archive = _checkpoint.check(state, fmt=_FORMAT, version=_VERSION, config=config, source=str(args.checkpoint))[
        "search"
    ]
    genomes = enc.genomes_from_state(archive["genomes"])
    fitness, classes = archive["fitness"], archive["classes"]
    clf = fb.models.efficientnet_lite0().replace(compile=args.compile)
    names = clf.class_names or []
    near = [i for i in range(len(classes)) if math.log(args.low) <= float(fitness[i]) < math.log(args.high)]
    if not near:
        parser.error(f"no elite in [{args.low}, {args.high}) in {args.checkpoint}")
    print(f"{len(near)} elites in [{args.low:g}, {args.high:g}), {args.children} children each per way")
    totals = dict.fromkeys(WAYS, 0)
    t0 = time.perf_counter()
    for i in near:
        c = int(classes[i])
        parents = genomes[torch.full((args.children,), i)]
        row = []
        for way in WAYS:
            kids = children(enc, parents, way, seed=1000 * c + 11)
            with torch.no_grad():  # the elite re-scored in the same call (the archive may hold another model's score)
                both = clf.log_probs(torch.cat([enc.render(genomes[torch.tensor([i])]), enc.render(kids)]))[:, c]
            f0, lp = float(both[0]), both[1:]
            changed = (kids.weight != parents.weight).flatten(1).any(1)
            changed |= (kids.edge != parents.edge).flatten(1).any(1) | (kids.activation != parents.activation).any(1)
            better = int(((lp > f0) & changed).sum())  # a copy of the elite is no improvement
            totals[way] += better
            row.append(f"{way}: {better:3d}, best {math.exp(float(lp.max())):.4f}")
        print(
            f"{c:4d} {names[c] if names else '':<16} at {math.exp(float(fitness[i])):.4f} | " + " | ".join(row),
            flush=True,
        )
    tries = len(near) * args.children
    print(
        "children that beat their elite: "
        + ", ".join(f"{way} {n}/{tries} ({100 * n / tries:.1f}%)" for way, n in totals.items())
    )
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
