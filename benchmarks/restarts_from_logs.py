"""Would K independent searches on 1/K of the budget each have done better? Read off stored logs.

``python benchmarks/restarts_from_logs.py [LOG ...]``

A search with a fixed seed is deterministic in its evaluation count: its first E/2 evaluations are
those of the same search stopped at E/2. So the "evaluations to 99%" lines of stored ten-minute
``bench_cppn.py --part imagenet`` runs tell, for every class, whether a run of half (a third, a
quarter) the budget would have reached 99%. For every set of K runs of one setting (different seeds),
this prints how many classes at least one of the K reached 99% within 1/K of the smallest budget of
the set: the best-of-K result of K independent searches sharing one run's budget (restarts, or
islands that never exchange anything). The issue-16 aim (median >= 99% over the 10 classes, the median
being the 5th lowest) needs 6 classes. This is what motivated ``MAPElites(islands=)``; the islands
share more than this (a class met in one island draws no parents in any), so the real runs are in
``benchmarks/results/cppn_fp32_compiled_islands_ten_minutes_cpu_without_bf16_units.txt``.
"""

from __future__ import annotations

import argparse
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
DEFAULT_LOGS = [
    RESULTS / "cppn_fp32_compiled_near_refine_ten_minutes_cpu_without_bf16_units.txt",
    RESULTS / "cppn_fp32_compiled_ten_minutes_render_savings_cpu_without_bf16_units.txt",
    RESULTS / "cppn_fp32_compiled_ten_minutes_cpu_without_bf16_units.txt",
]
HEADER = re.compile(
    r"ImageNet CPPN \((?P<setting>.*?), seed (?P<seed>\d+)(?P<more>.*?)\): (?P<evals>[\d,]+) evaluations in"
)
CLASS = re.compile(
    r"^\s+(?P<cls>\d+) .*?(?P<conf>\d\.\d+)\s+evaluations to 99%(?: \(\w+ scores\))?: (?P<at>[\d,]+|-)\s*$"
)
FOOLED = re.compile(r">= 99%: (?P<fooled>\d+)/\d+")  # the header's own count, exact (the lines round to 4 digits)
AIM = 6  # classes >= 99% for a median (5th lowest of 10) >= 99%


@dataclass
class Run:
    setting: str
    seed: int
    evaluations: int
    reached: dict[int, int | None] = field(default_factory=dict)  # class -> evaluations to 99% (None: never)
    confidence: dict[int, float] = field(default_factory=dict)  # class -> final float32 confidence (4 digits)
    fooled: int | None = None  # classes >= 99% as the run counted them (None: not in the log)

    def within(self, budget: int) -> set[int]:
        return {c for c, at in self.reached.items() if at is not None and at <= budget}


def parse(path: Path) -> list[Run]:
    runs: list[Run] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        head = HEADER.search(line)
        if head is None and "ImageNet CPPN (" in line:  # its class lines would land in the run before
            raise SystemExit(f"{path}:{number}: a run's line this reader does not understand: {line[:120]}")
        if head:
            setting = head["setting"] + head["more"]
            runs.append(Run(setting, int(head["seed"]), int(head["evals"].replace(",", ""))))
            if count := FOOLED.search(line):
                runs[-1].fooled = int(count["fooled"])
        elif runs and (hit := CLASS.match(line)):
            runs[-1].reached[int(hit["cls"])] = None if hit["at"] == "-" else int(hit["at"].replace(",", ""))
            runs[-1].confidence[int(hit["cls"])] = float(hit["conf"])
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="*", type=Path, default=DEFAULT_LOGS)
    parser.add_argument("--most", type=int, default=4, help="largest K")
    args = parser.parse_args()
    by_setting: dict[str, dict[int, Run]] = {}
    for path in args.logs:
        for run in parse(path):
            by_setting.setdefault(run.setting, {}).setdefault(run.seed, run)  # the first run of a seed per setting
    for setting, seeds in by_setting.items():
        runs = [seeds[s] for s in sorted(seeds)]
        if len(runs) < 2:
            continue
        single = [len(r.within(r.evaluations)) for r in runs]
        print(f"{setting}\n  seeds {[r.seed for r in runs]}, {min(r.evaluations for r in runs):,}-"
              f"{max(r.evaluations for r in runs):,} evaluations")  # fmt: skip
        print(
            f"  one search, the whole budget: aim met on {sum(n >= AIM for n in single)} of {len(runs)} seeds, "
            f"classes >= 99% per seed {single} (mean {sum(single) / len(single):.2f})"
        )
        for k in range(2, min(args.most, len(runs)) + 1):
            counts = []
            for group in itertools.combinations(runs, k):
                budget = min(r.evaluations for r in group) // k
                counts.append(len(set().union(*(r.within(budget) for r in group))))
            print(
                f"  best of {k} searches, 1/{k} of the budget each: aim met in {sum(n >= AIM for n in counts)} of "
                f"{len(counts)} sets of seeds, mean classes >= 99% {sum(counts) / len(counts):.2f}"
            )


if __name__ == "__main__":
    main()
