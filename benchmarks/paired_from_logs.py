"""Two settings of the CPU proxy compared seed by seed, read off stored logs.

``python benchmarks/paired_from_logs.py [--by-seed] [--seeds 8,9] A.txt B.txt [B2.txt ...]`` (setting A's runs in one log, B's in one or more)

Runs of the two logs pair up when they have the same seed and the same evaluation count (a setting run
with ``bench_cppn.py --max-evaluations N``, N the evaluations the other made in its ten minutes), or
with ``--by-seed`` the same seed alone (two timed runs, each with the evaluations its ten minutes
gave: the aim as it is stated, where a faster search makes more). For
every pair this prints the median of the 10 classes (the 5th lowest, as ``torch.median`` gives it) and
the classes at >= 99% of each (the run's own count: the class lines round to 4 digits); then the aim
(median >= 99%, so 6 classes of 10) met per setting, the exact McNemar test on
the pairs where only one of the two met it, the sign test on the medians (ties left out), the class-runs
at >= 99% and the mean confidence. Runs without a partner are listed and left out.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from restarts_from_logs import Run, parse


def median(run: Run) -> float:
    values = sorted(run.confidence.values())
    return values[(len(values) - 1) // 2]


def met(run: Run) -> int:
    """Classes >= 99%: the run's own count where the log has it (its lines round to 4 digits: 0.9900 may be below)."""
    return run.fooled if run.fooled is not None else sum(c >= 0.99 for c in run.confidence.values())


def aim_met(run: Run) -> bool:
    """Median >= 99%: the 5th lowest of 10 is >= 99% exactly when 6 classes are."""
    return met(run) >= len(run.confidence) - (len(run.confidence) - 1) // 2


def two_sided_binomial(k: int, n: int) -> float:
    """Exact two-sided p of k or fewer successes (or as many failures) in n fair coin flips."""
    if n == 0:
        return 1.0
    low = min(k, n - k)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(low + 1)) / 2**n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="log of setting A")
    parser.add_argument("b", type=Path, nargs="+", help="log(s) of setting B")
    parser.add_argument(
        "--by-seed", action="store_true", help="pair runs by seed alone (timed runs: evaluations may differ)"
    )
    parser.add_argument("--seeds", help="only these seeds, comma-separated (e.g. 8,9,10)")
    args = parser.parse_args()
    a_runs, b_runs = parse(args.a), [run for path in args.b for run in parse(path)]
    if args.seeds is not None:
        try:
            chosen = {int(seed) for seed in args.seeds.split(",")}
        except ValueError:
            raise SystemExit(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
        a_runs = [r for r in a_runs if r.seed in chosen]
        b_runs = [r for r in b_runs if r.seed in chosen]

    def key(run: Run) -> tuple[int, int | None]:
        return (run.seed, None if args.by_seed else run.evaluations)

    what = "seed" if args.by_seed else "(seed, evaluations)"
    for label, runs in (("A", a_runs), ("B", b_runs)):
        keys = [key(r) for r in runs]
        twice = sorted({k[0] if args.by_seed else k for k in keys if keys.count(k) > 1})
        if twice:
            raise SystemExit(f"setting {label}: more than one run of {what} {twice}: which to pair?")
    b_by_key = {key(r): r for r in b_runs}
    pairs = sorted(((a, b_by_key[key(a)]) for a in a_runs if key(a) in b_by_key), key=lambda pair: pair[0].seed)
    paired_b = {id(b) for _, b in pairs}
    for label, runs, partnered in (
        ("A", a_runs, {id(a) for a, _ in pairs}),
        ("B", b_runs, paired_b),
    ):
        for r in runs:
            if id(r) not in partnered:
                print(f"{label} unpaired: seed {r.seed}, {r.evaluations:,} evaluations ({r.setting})")
    if not pairs:
        raise SystemExit(f"no pairs: the logs share no {what}")
    for label, side in (("A", 0), ("B", 1)):
        settings = sorted({pair[side].setting for pair in pairs})
        print(f"{label}: {settings[0]}" + "".join(f"\n   or: {other}" for other in settings[1:]))
    print(f"{'seed':>5} {'evaluations':>17} {'median A':>9} {'(>=99%)':>7} {'median B':>9} {'(>=99%)':>7}")
    for a, b in pairs:
        evaluations = f"{a.evaluations:,}" + ("" if a.evaluations == b.evaluations else f" / {b.evaluations:,}")
        print(f"{a.seed:>5} {evaluations:>17} {median(a):>9.2%} {met(a):>7} {median(b):>9.2%} {met(b):>7}")
    aim_a = [aim_met(a) for a, _ in pairs]
    aim_b = [aim_met(b) for _, b in pairs]
    only_a = sum(x and not y for x, y in zip(aim_a, aim_b, strict=True))
    only_b = sum(y and not x for x, y in zip(aim_a, aim_b, strict=True))
    higher = sum(median(a) > median(b) for a, b in pairs)
    lower = sum(median(a) < median(b) for a, b in pairs)
    n = len(pairs)
    print(
        f"aim met: A {sum(aim_a)} of {n}, B {sum(aim_b)} of {n}; exact McNemar p = "
        f"{two_sided_binomial(only_a, only_a + only_b):.3g} ({only_a} met by A only, {only_b} by B only)"
    )
    print(
        f"median higher with A on {higher} seeds, lower on {lower}, equal on {n - higher - lower}; "
        f"sign test p = {two_sided_binomial(higher, higher + lower):.3g}"
    )
    for label, side in (("A", 0), ("B", 1)):
        runs = [pair[side] for pair in pairs]
        conf = [c for r in runs for c in r.confidence.values()]
        print(
            f"{label}: {sum(met(r) for r in runs)} of {len(conf)} class-runs >= 99%, "
            f"mean confidence {statistics.fmean(conf):.1%}"
        )


if __name__ == "__main__":
    main()
