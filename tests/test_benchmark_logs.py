"""The log readers in benchmarks/: pairs, medians and the exact tests they print."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import paired_from_logs
import restarts_from_logs

CLASSES = [599, 489, 904, 646, 611, 741, 815, 539, 556, 794]


def log(runs: list[tuple[int, int, list[float], str]]) -> str:
    """A bench_cppn.py-style log: (seed, evaluations, 10 confidences, setting tail) per run."""
    lines = []
    for seed, evals, conf, more in runs:
        lines.append(f"ImageNet CPPN (EfficientNet-Lite0 fp32, seed {seed}{more}): {evals:,} evaluations in 600 s")
        for c, q in zip(CLASSES, conf, strict=True):
            at = "1,000" if q >= 0.99 else "-"
            lines.append(f"   {c} some class              {q:.4f}  evaluations to 99% (fp32 scores): {at}")
    return "\n".join(lines) + "\n"


def test_parse_reads_confidence_and_evaluations_to_99(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text(log([(3, 40_000, [0.995] * 6 + [0.5] * 4, ", 2 islands")]))
    (run,) = restarts_from_logs.parse(path)
    assert (run.seed, run.evaluations, run.setting) == (3, 40_000, "EfficientNet-Lite0 fp32, 2 islands")
    assert run.confidence[599] == 0.995 and run.confidence[794] == 0.5
    assert run.within(40_000) == set(CLASSES[:6])


GOOD, BAD = [0.995] * 6 + [0.9] * 4, [0.995] * 5 + [0.9] * 5  # the aim met (6 classes at 99%) / missed (5)


def paired(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: object) -> str:
    """``paired_from_logs.py ARGS``: what it prints."""
    monkeypatch.setattr(sys, "argv", ["paired_from_logs.py", *map(str, args)])
    paired_from_logs.main()
    return capsys.readouterr().out


def test_pairs_need_equal_seed_and_evaluations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(log([(0, 100, GOOD, ", 2 islands"), (1, 200, GOOD, ", 2 islands"), (2, 300, GOOD, ", 2 islands")]))
    b.write_text(log([(0, 100, BAD, ""), (1, 200, BAD, ""), (2, 301, BAD, "")]))
    out = paired(monkeypatch, capsys, a, b)
    assert "A unpaired: seed 2, 300 evaluations" in out and "B unpaired: seed 2, 301 evaluations" in out
    assert "aim met: A 2 of 2, B 0 of 2; exact McNemar p = 0.5 (2 met by A only, 0 by B only)" in out
    assert "median higher with A on 2 seeds, lower on 0, equal on 0; sign test p = 0.5" in out
    assert "A: 12 of 20 class-runs >= 99%" in out and "B: 10 of 20 class-runs >= 99%" in out


def test_timed_runs_pair_by_seed_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(log([(0, 120, GOOD, ""), (1, 240, GOOD, ""), (4, 100, GOOD, "")]))
    b.write_text(log([(0, 100, BAD, ""), (1, 200, GOOD, "")]))
    out = paired(monkeypatch, capsys, "--by-seed", a, b)
    assert "A unpaired: seed 4, 100 evaluations" in out and "B unpaired" not in out
    assert "120 / 100" in out and "240 / 200" in out  # each run's own evaluations
    assert "aim met: A 2 of 2, B 1 of 2; exact McNemar p = 1 (1 met by A only, 0 by B only)" in out
    b.write_text(log([(0, 100, BAD, ""), (0, 200, GOOD, ""), (1, 200, GOOD, "")]))  # one seed twice: which to pair?
    with pytest.raises(SystemExit, match=r"setting B: more than one run of seed \[0\]"):
        paired(monkeypatch, capsys, "--by-seed", a, b)
    out = paired(monkeypatch, capsys, "--by-seed", "--seeds", "1,4", a, b)  # seed 0 left out: no question
    assert "aim met: A 1 of 1, B 1 of 1" in out and "A unpaired: seed 4" in out
    with pytest.raises(SystemExit, match="--seeds must be comma-separated integers"):
        paired(monkeypatch, capsys, "--by-seed", "--seeds", "1;4", a, b)
    with pytest.raises(SystemExit, match=r"no pairs: the logs share no \(seed, evaluations\)"):
        paired(monkeypatch, capsys, a, b)  # without --by-seed: no pairs


def test_the_runs_own_count_decides_at_the_rounded_border(tmp_path: Path) -> None:
    """A class printed 0.9900 may be below 99%: the header's count of the run is the exact one."""
    path = tmp_path / "a.txt"
    text = log([(0, 100, [0.995] * 5 + [0.99] + [0.5] * 4, "")])
    path.write_text(text.replace(" evaluations in 600 s", " evaluations in 600 s; >= 99%: 5/10", 1))
    (run,) = restarts_from_logs.parse(path)
    assert run.fooled == 5 and paired_from_logs.met(run) == 5
    assert not paired_from_logs.aim_met(run)
    run.fooled = None  # without the count, the rounded lines are all there is
    assert paired_from_logs.met(run) == 6 and paired_from_logs.aim_met(run)


def test_median_is_the_lower_middle_and_the_binomial_is_exact() -> None:
    run = restarts_from_logs.Run("s", 0, 1, confidence=dict(zip(CLASSES, [0.1 * i for i in range(10)], strict=True)))
    assert paired_from_logs.median(run) == pytest.approx(0.4)
    assert paired_from_logs.two_sided_binomial(0, 7) == pytest.approx(2 / 128)
    assert paired_from_logs.two_sided_binomial(3, 6) == 1.0
    assert paired_from_logs.two_sided_binomial(0, 0) == 1.0


def test_a_setting_with_brackets_parses_and_duplicate_pairs_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(log([(0, 100, GOOD, ", GradientPolish(every=200, steps=30)")]))
    (run,) = restarts_from_logs.parse(a)
    assert run.setting.endswith("GradientPolish(every=200, steps=30)") and len(run.confidence) == 10
    b.write_text(log([(0, 100, GOOD, ""), (0, 100, GOOD, ", again")]))
    with pytest.raises(SystemExit, match=r"setting B: more than one run of \(seed, evaluations\) \[\(0, 100\)\]"):
        paired(monkeypatch, capsys, a, b)


def test_a_run_line_the_reader_does_not_understand_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("ImageNet CPPN (EfficientNet-Lite0, no seed here): 100 evaluations in 1 s\n")
    with pytest.raises(SystemExit, match="a.txt:1: a run's line this reader does not understand"):
        restarts_from_logs.parse(path)
