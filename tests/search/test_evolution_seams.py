"""The search's seams: evaluators, parent selectors, schedules, callbacks, resume after failures."""

from __future__ import annotations

import itertools
import json
import math
import random
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import foolbench as fb
from foolbench import _checkpoint
from foolbench.encodings import CPPNEncoding, CPPNGenomes, DirectEncoding
from foolbench.errors import CheckpointError, InvalidArgumentError, InvalidTypeError
from foolbench.search import MAPElites
from tests.search.test_no_sync import SELECTOR_CASES

ENC = DirectEncoding((1, 28, 28), mutation_rate=0.02, eta=1.0)


def search(clf: fb.models.TorchClassifier, seed: int = 0, **kw: Any) -> MAPElites:
    return MAPElites(clf, ENC, batch_size=32, seed=seed, **kw)


class CountingEvaluator:
    """A user evaluator: renders and scores itself, and counts the genomes it saw."""

    def __init__(self, clf: fb.models.TorchClassifier) -> None:
        self.clf = clf
        self.seen = 0
        self.columns: list[list[int] | None] = []

    def __call__(self, genomes: torch.Tensor, *, columns: torch.Tensor | None = None) -> torch.Tensor:
        self.seen += len(genomes)
        self.columns.append(None if columns is None else columns.tolist())
        lp = torch.log_softmax(self.clf(genomes).float(), dim=1)
        return lp if columns is None else lp[:, columns]


def test_user_evaluator_gives_the_local_result(lenet: fb.models.TorchClassifier) -> None:
    mine = CountingEvaluator(lenet)
    a = search(lenet, seed=2, evaluator=mine, classes=[1, 4, 7]).run(generations=6, progress=False)
    b = search(lenet, seed=2, classes=[1, 4, 7]).run(generations=6, progress=False)
    assert mine.seen == a.evaluations == 6 * 32
    assert mine.columns[0] == [1, 4, 7]  # only the archive's columns are asked for
    assert torch.allclose(a.confidence, b.confidence, rtol=1e-5)
    assert torch.equal(a.images, b.images)


def test_evaluator_must_be_callable(lenet: fb.models.TorchClassifier) -> None:
    with pytest.raises(InvalidTypeError, match="evaluator must be callable"):
        search(lenet, evaluator=42)


def test_evaluator_with_wrong_shape_is_refused(lenet: fb.models.TorchClassifier) -> None:
    def bad(genomes: torch.Tensor, *, columns: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros(len(genomes), 3)

    s = search(lenet, evaluator=bad)
    with pytest.raises(InvalidArgumentError, match=r"log_probs must be a float tensor of shape \(32, 10\)"):
        s.step()
    assert s._asked is None and s.generation == 0  # the batch was dropped, the search can go on


def test_parent_selectors(lenet: fb.models.TorchClassifier) -> None:
    fit = torch.log(torch.tensor([0.99999, 0.5, 0.99999, 0.2]))
    occ = torch.ones(4, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    picks = fb.search.UnmetFirst(confidence=0.9999)(fit, occ, 400, g)
    assert set(picks.tolist()) == {1, 3}
    picks = fb.search.Uniform()(fit, occ, 400, g)
    assert set(picks.tolist()) == {0, 1, 2, 3}
    counts = torch.bincount(picks, minlength=4).float()
    assert float(counts.min()) > 60  # roughly uniform over 4 niches
    # weakest: rank weights 3 : 2 : 1 over the unmet niches 3 (0.1), 1 (0.5), 4 (0.9); none from met ones
    fit5 = torch.log(torch.tensor([0.99999, 0.5, 0.99999, 0.1, 0.9, 0.0]))
    occ5 = torch.tensor([True, True, True, True, True, False])
    counts = torch.bincount(fb.search.Weakest()(fit5, occ5, 6000, g), minlength=6).float() / 6000
    assert counts[[0, 2, 5]].sum() == 0
    assert counts[3] == pytest.approx(3 / 6, abs=0.03) and counts[1] == pytest.approx(2 / 6, abs=0.03)
    assert counts[4] == pytest.approx(1 / 6, abs=0.03)
    met = torch.full((3,), math.log(0.99999))  # all met, all tied: every occupied niche equally likely
    counts = torch.bincount(fb.search.Weakest()(met, torch.ones(3, dtype=torch.bool), 6000, g), minlength=3)
    assert (counts.float() / 6000 - 1 / 3).abs().max() < 0.03
    assert search(lenet, parents="weakest").run(generations=2, progress=False).settings["parents"] == {
        "name": "weakest",
        "confidence": 0.9999,
    }
    # focus: 3/4 of the draws from niche 2 (unmet), the rest uniform over the occupied niches
    picks = fb.search.Focus([2], share=0.75)(fit, torch.tensor([True, True, True, False]), 8000, g)
    counts = torch.bincount(picks, minlength=4).float() / 8000
    assert counts[3] == 0 and counts[2] == pytest.approx(0.75 + 0.25 / 3, abs=0.02)
    assert counts[0] == pytest.approx(0.25 / 3, abs=0.02)
    with pytest.raises(InvalidArgumentError, match="niches must be"):
        fb.search.Focus([])
    with pytest.raises(InvalidArgumentError, match="share"):
        fb.search.Focus([1], share=1.5)
    with pytest.raises(InvalidArgumentError, match="Focus niches go up to 12"):
        search(lenet, classes=[0, 1], parents=fb.search.Focus([12])).run(generations=2, progress=False)
    with pytest.raises(InvalidArgumentError, match="parents must be one of"):
        search(lenet, parents="best")
    with pytest.raises(InvalidTypeError, match="parents must be a name or a ParentSelector"):
        search(lenet, parents=3)


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"parents": fb.search.Weakest}, InvalidTypeError, r"parents must .* got the class Weakest: .* Weakest\(\)"),
        ({"parents": fb.search.Uniform}, InvalidTypeError, r"pass an instance, e.g. Uniform\(\)"),
        ({"mutation_schedule": fb.search.StepDecay}, InvalidTypeError, r"mutation_schedule .* e.g. StepDecay\(\)"),
        ({"mutation_schedule": -1}, InvalidArgumentError, r"mutation_schedule must be a finite number in \(0, inf\)"),
        ({"mutation_schedule": 0.0}, InvalidArgumentError, "mutation_schedule must be a finite number"),
    ],
)
def test_a_selector_or_schedule_class_is_refused_when_the_search_is_built(
    lenet: fb.models.TorchClassifier, kw: dict[str, Any], err: type[Exception], match: str
) -> None:
    """A class passed the protocol check (isinstance is True for it) and the run failed at its first draw
    with a TypeError; a negative strength was refused as "strength must be...", naming no argument of the search."""
    with pytest.raises(err, match=match):
        search(lenet, **kw)


def test_a_near_strength_names_its_base() -> None:
    with pytest.raises(InvalidTypeError, match=r"base must be .* e.g. StepDecay\(\)"):
        fb.search.NearStrength(fb.search.StepDecay, near_confidence=0.9)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="base must be a finite number"):
        fb.search.NearStrength(-1.0, near_confidence=0.9)


def test_parent_selector_names_take_the_unmet_level() -> None:
    from foolbench.search._operators import parent_selector

    for name, kind in [("unmet-first", fb.search.UnmetFirst), ("weakest", fb.search.Weakest)]:
        sel = parent_selector(name, confidence=0.5)
        assert type(sel) is kind and sel.config()["confidence"] == 0.5
    assert parent_selector("curiosity", confidence=0.5).config()["confidence"] == 0.5
    assert parent_selector("unmet-first").config()["confidence"] == 0.9999
    assert parent_selector("uniform", confidence=0.5).config() == {"name": "uniform"}  # it has no level
    fit = torch.log(torch.tensor([0.6, 0.4, 0.3]))  # at level 0.5, niche 0 is met
    picks = parent_selector("unmet-first", confidence=0.5)(fit, torch.ones(3, dtype=torch.bool), 400, torch.Generator())
    assert set(picks.tolist()) == {1, 2}
    for bad in ("weakest", "uniform"):
        with pytest.raises(InvalidArgumentError, match="confidence"):
            parent_selector(bad, confidence=1.5)
    with pytest.raises(InvalidArgumentError, match="has its own"):
        parent_selector(fb.search.Uniform(), confidence=0.5)


def test_parent_selector_changes_the_search(lenet: fb.models.TorchClassifier) -> None:
    class OnlyFirst:
        def __call__(self, fitness: torch.Tensor, occupied: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
            return torch.zeros(n, dtype=torch.long, device=fitness.device)

        def config(self) -> dict[str, Any]:
            return {"name": "only-first"}

    s = search(lenet, parents=OnlyFirst())
    res = s.run(generations=4, progress=False)
    assert res.settings["parents"] == {"name": "only-first"}
    u = search(lenet, parents="uniform").run(generations=4, progress=False)
    assert not torch.equal(res.images, u.images)


def test_mutation_schedule_reaches_the_encoding(lenet: fb.models.TorchClassifier) -> None:
    seen: list[float] = []

    class Spy(DirectEncoding):
        def mutate(self, genomes: torch.Tensor, generator: torch.Generator, *, strength: float = 1.0) -> torch.Tensor:
            seen.append(strength)
            return super().mutate(genomes, generator, strength=strength)

    enc = Spy((1, 28, 28), mutation_rate=0.02, eta=1.0)
    sched = fb.search.StepDecay(factor=0.5, every=2, minimum=0.2)
    res = MAPElites(lenet, enc, batch_size=16, seed=0, mutation_schedule=sched).run(generations=7, progress=False)
    assert seen == [1.0, 0.5, 0.5, 0.25, 0.25, 0.2]  # generations 1..6
    assert res.settings["mutation_schedule"]["name"] == "step-decay"
    with pytest.raises(InvalidTypeError, match="mutation_schedule"):
        search(lenet, mutation_schedule="fast")


def test_extending_a_run_equals_one_run(lenet: fb.models.TorchClassifier) -> None:
    s = search(lenet, seed=4)
    s.run(max_evaluations=500, progress=False)
    extended = s.run(max_evaluations=1000, progress=False)
    once = search(lenet, seed=4).run(max_evaluations=1000, progress=False)
    assert extended.evaluations == once.evaluations == 1024
    assert torch.equal(extended.images, once.images)
    assert torch.equal(extended.history.confidence, once.history.confidence)


def test_ctrl_c_during_evaluation_then_resume_is_bit_for_bit(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.pt"
    local = fb.search.LocalEvaluator(lenet, ENC)
    calls = {"n": 0}

    def interrupted_once(genomes: torch.Tensor, *, columns: torch.Tensor | None = None) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return local(genomes, columns=columns)

    with pytest.raises(KeyboardInterrupt):
        search(lenet, seed=9, evaluator=interrupted_once).run(generations=9, progress=False, checkpoint=ckpt)
    resumed = search(lenet, seed=9).run(generations=9, progress=False, checkpoint=ckpt)
    once = search(lenet, seed=9).run(generations=9, progress=False)
    assert torch.equal(resumed.images, once.images)
    assert torch.equal(resumed.history.confidence, once.history.confidence)


def test_transient_error_then_run_again_is_bit_for_bit(lenet: fb.models.TorchClassifier) -> None:
    local = fb.search.LocalEvaluator(lenet, ENC)
    calls = {"n": 0}

    def flaky(genomes: torch.Tensor, *, columns: torch.Tensor | None = None) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("worker went away")
        return local(genomes, columns=columns)

    s = search(lenet, seed=5, evaluator=flaky)
    with pytest.raises(ConnectionError):
        s.run(generations=6, progress=False)
    again = s.run(generations=6, progress=False)
    once = search(lenet, seed=5).run(generations=6, progress=False)
    assert torch.equal(again.images, once.images)


def test_error_inside_mutate_rolls_the_rng_back(lenet: fb.models.TorchClassifier) -> None:
    fail = {"left": 1}

    class Fragile(DirectEncoding):
        def mutate(self, genomes: torch.Tensor, generator: torch.Generator, *, strength: float = 1.0) -> torch.Tensor:
            out = super().mutate(genomes, generator, strength=strength)  # draws random numbers first
            if fail["left"]:
                fail["left"] -= 1
                raise RuntimeError("boom")
            return out

    s = MAPElites(lenet, Fragile((1, 28, 28), mutation_rate=0.02, eta=1.0), batch_size=32, seed=6)
    s.step()
    with pytest.raises(RuntimeError, match="boom"):
        s.step()
    s.run(generations=5, progress=False)
    once = search(lenet, seed=6).run(generations=5, progress=False)
    assert torch.equal(s.result().images, once.images)


def test_checkpoint_between_ask_and_tell_holds_the_state_before_ask(
    lenet: fb.models.TorchClassifier, tmp_path: Path
) -> None:
    s = search(lenet, seed=8)
    s.run(generations=3, progress=False)
    s.ask()
    s.save_checkpoint(tmp_path / "mid.pt")
    resumed = search(lenet, seed=8).run(generations=6, progress=False, checkpoint=tmp_path / "mid.pt")
    once = search(lenet, seed=8).run(generations=6, progress=False)
    assert torch.equal(resumed.images, once.images)


def _edit(path: Path, edit: Any) -> None:
    """Apply ``edit`` to a checkpoint's payload and re-sign it, as a careful hand-editor would."""
    state = _checkpoint.load(path)
    edit(state["payload"])
    state["checksum"] = _checkpoint.digest([state["config"], state["payload"]])
    _checkpoint.save(path, state)


def _set_fitness(value: float) -> Any:
    def edit(p: dict[str, Any]) -> None:
        p["search"]["fitness"][0] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set_fitness(float("nan")), "'fitness' holds NaN"),
        (_set_fitness(float("inf")), "'fitness' holds values above 0"),
        (_set_fitness(0.5), "'fitness' holds values above 0"),
        (lambda p: p.update(generation=-1), "'generation' must be a int >= 0"),
        (lambda p: p.update(generation=True), "'generation' must be a int"),
        (lambda p: p.update(evaluations=10**18), "history_evaluations"),
        (
            lambda p: p["search"].update(found_at=torch.zeros(3, dtype=torch.long)),
            r"'found_at' must have shape \(10,\)",
        ),
        (lambda p: p.update(history_log_probs=torch.zeros(2, 10)), "'history_log_probs' must have shape"),
        (lambda p: p["search"].pop("genomes"), "genomes must be a dict"),
        (lambda p: p["search"].update(genomes={"pixels": torch.full((10, 1, 28, 28), 2.0)}), r"outside \[0, 1\]"),
        (lambda p: p.update(rng_state=torch.zeros(3, dtype=torch.uint8)), "rng_state"),
        (lambda p: p.pop("seconds"), "lacks the field 'seconds'"),
    ],
)
def test_edited_checkpoint_fields_are_refused(
    lenet: fb.models.TorchClassifier, tmp_path: Path, edit: Any, match: str
) -> None:
    ckpt = tmp_path / "run.pt"
    search(lenet, seed=3).run(generations=3, progress=False, checkpoint=ckpt)
    _edit(ckpt, edit)
    with pytest.raises(CheckpointError, match=match):
        search(lenet, seed=3).load_checkpoint(ckpt)


def test_bit_flips_never_load_silently(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.pt"
    s = search(lenet, seed=3)
    s.run(generations=3, progress=False, checkpoint=ckpt)
    original = ckpt.read_bytes()
    want = s.state_dict()
    rnd = random.Random(0)
    refused = 0
    for _ in range(60):
        data = bytearray(original)
        pos = rnd.randrange(len(data))
        data[pos] ^= 1 << rnd.randrange(8)
        ckpt.write_bytes(bytes(data))
        other = search(lenet, seed=3)
        try:
            other.load_checkpoint(ckpt)
        except CheckpointError:
            refused += 1
            continue
        # a flip that loads must have hit bytes that carry no state (e.g. zip metadata)
        assert _checkpoint.digest(other.state_dict()) == _checkpoint.digest(want)
    assert refused > 30


def test_seed_out_of_range_names_seed(lenet: fb.models.TorchClassifier) -> None:
    with pytest.raises(InvalidArgumentError, match=r"seed must be an int in \[0, 2\*\*64 - 1\]"):
        search(lenet, seed=2**64)


@pytest.mark.parametrize("device", ["tpu9", "cuda:7" if not torch.cuda.is_available() else "cuda:99"])
def test_bad_search_device(lenet: fb.models.TorchClassifier, device: str) -> None:
    with pytest.raises(InvalidArgumentError, match="device"):
        search(lenet, device=device)


def test_search_device_is_independent_of_the_model(lenet: fb.models.TorchClassifier) -> None:
    s = search(lenet, device="cpu")
    assert s.device == torch.device("cpu") and "device='cpu'" in repr(s)


def test_loggers_write_one_line_per_generation_and_survive_resume(
    lenet: fb.models.TorchClassifier, tmp_path: Path
) -> None:
    ckpt, log, table = tmp_path / "run.pt", tmp_path / "log.jsonl", tmp_path / "log.csv"
    cbs = [fb.search.JSONLLogger(log), fb.search.CSVLogger(table, every=2)]
    search(lenet, seed=1).run(generations=4, progress=False, checkpoint=ckpt, callbacks=cbs)
    # an interrupted run logged generations 5 and 6 that the checkpoint does not hold
    with log.open("a") as f:
        f.write(json.dumps({"generation": 5}) + "\n" + json.dumps({"generation": 6}) + "\n")
    cbs = [fb.search.JSONLLogger(log), fb.search.CSVLogger(table, every=2)]
    res = search(lenet, seed=1).run(generations=7, progress=False, checkpoint=ckpt, callbacks=cbs)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["generation"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert rows[-1]["evaluations"] == res.evaluations
    assert rows[-1]["median_confidence"] == pytest.approx(float(res.confidence.median()))
    csv_rows = table.read_text().splitlines()
    assert csv_rows[0].startswith("generation,evaluations") and len(csv_rows) == 1 + 3  # generations 2, 4, 6


def test_a_checkpointer_before_a_logger_never_saves_an_unlogged_generation(
    lenet: fb.models.TorchClassifier, tmp_path: Path
) -> None:
    """With ``[Checkpointer, ..., CSVLogger]``, an interrupt between the two saved generation 3 before its
    row was written: the resumed run started after it, and the log lacked row 3 for good."""

    class CtrlC(fb.search.Callback):
        def on_generation(self, search: fb.search.Evolution) -> None:
            if search.generation == 3:
                raise KeyboardInterrupt

    ckpt, table = tmp_path / "run.pt", tmp_path / "log.csv"
    with pytest.raises(KeyboardInterrupt):
        search(lenet, seed=1).run(
            generations=5, progress=False, callbacks=[fb.search.Checkpointer(ckpt, every=1), CtrlC(),
                                                      fb.search.CSVLogger(table)],
        )  # fmt: skip
    resumed = search(lenet, seed=1)
    resumed.load_checkpoint(ckpt)
    assert resumed.generation == 2  # the last generation the logger wrote
    resumed.run(generations=5, progress=False, callbacks=[fb.search.CSVLogger(table)])
    rows = table.read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1", "2", "3", "4", "5"]


def test_a_csv_row_torn_by_a_crash_is_dropped_on_resume(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    """A row cut short mid-write ("1" of a row for generation 10, say) passed the generation check and
    stayed as a second, empty row for an earlier generation."""
    ckpt, table = tmp_path / "run.pt", tmp_path / "log.csv"
    search(lenet, seed=1).run(generations=3, progress=False, checkpoint=ckpt, callbacks=[fb.search.CSVLogger(table)])
    whole = table.read_text()
    with table.open("a") as f:
        f.write("1")  # the start of generation 10's row, then the crash
    search(lenet, seed=1).run(generations=4, progress=False, checkpoint=ckpt, callbacks=[fb.search.CSVLogger(table)])
    rows = table.read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"] and table.read_text().startswith(whole)


def test_user_callback_can_stop_the_run(lenet: fb.models.TorchClassifier) -> None:
    class StopAfterImprovement(fb.search.Callback):
        def should_stop(self, search: fb.search.Evolution) -> bool:
            return search.generation > 0 and float(search.best_log_probs().min()) > math.log(0.2)

    res = search(lenet, seed=0).run(generations=300, progress=False, callbacks=[StopAfterImprovement()])
    assert float(res.confidence.min()) > 0.2 and res.evaluations < 300 * 32
    with pytest.raises(InvalidTypeError, match="callbacks must be"):
        search(lenet).run(generations=2, progress=False, callbacks=[print])  # type: ignore[list-item]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("encoding", [ENC, fb.encodings.CPPNEncoding((1, 28, 28))], ids=["direct", "cppn"])
@pytest.mark.parametrize(("parents", "crossover"), SELECTOR_CASES, ids=str)
def test_cuda_generation_step_has_no_host_sync(encoding: Any, parents: Any, crossover: float) -> None:
    """On CUDA (the CPPN through the Triton kernel when Triton is installed)."""
    if isinstance(encoding, fb.encodings.CPPNEncoding):
        pytest.importorskip("triton")  # the tensor render reads genome sizes back by design
    clf = fb.models.lenet_mnist(device="cuda")
    _steps_without_sync(MAPElites(clf, encoding, batch_size=256, seed=0, parents=parents, crossover=crossover))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_single_class_step_has_no_host_sync() -> None:
    clf = fb.models.lenet_mnist(device="cuda")
    _steps_without_sync(fb.search.SingleClassEvolution(clf, ENC, target=3, batch_size=256, population=64, seed=0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("encoding", [ENC, fb.encodings.CPPNEncoding((1, 28, 28))], ids=["direct", "cppn"])
def test_cuda_random_search_step_has_no_host_sync(encoding: Any) -> None:
    if isinstance(encoding, fb.encodings.CPPNEncoding):
        pytest.importorskip("triton")
    _steps_without_sync(fb.search.RandomSearch(fb.models.lenet_mnist(device="cuda"), encoding, batch_size=256, seed=0))


def _steps_without_sync(s: fb.search.Evolution) -> None:
    """Two warm-up generations (allocation, caches, masks), then three under sync-debug 'error'."""
    s.step()
    s._step()
    torch.cuda.synchronize()
    try:
        with (
            warnings.catch_warnings()
        ):  # torch warns that the mode is a prototype; the suite turns warnings into errors
            warnings.filterwarnings("ignore", message="Synchronization debug mode is a prototype")
            torch.cuda.set_sync_debug_mode("error")
        for _ in range(3):
            s._step()
    finally:
        torch.cuda.set_sync_debug_mode("default")  # never leak the mode into the next test
    assert s.generation == 5


def test_curiosity_scores_follow_successful_parents_and_resume(
    lenet: fb.models.TorchClassifier, tmp_path: Path
) -> None:
    ckpt = tmp_path / "c.pt"
    full = search(lenet, seed=2, parents="curiosity").run(generations=8, progress=False)
    s = search(lenet, seed=2, parents="curiosity")
    s.run(generations=4, progress=False, checkpoint=ckpt)
    score = s.parents.score
    assert score is not None and score.shape == (10,) and float(score.abs().sum()) > 0
    resumed = search(lenet, seed=2, parents="curiosity").run(generations=8, progress=False, checkpoint=ckpt)
    assert torch.equal(full.images, resumed.images)
    assert full.settings["parents"]["name"] == "curiosity"


def test_focus_keeps_every_class_as_stepping_stones(lenet: fb.models.TorchClassifier) -> None:
    """All 10 digits in the archive, 90% of the parents from digits 3 and 8 (plus their uniform share)."""
    picked: list[torch.Tensor] = []

    class Spy(fb.search.Focus):
        def __call__(self, fitness: torch.Tensor, occupied: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
            out = super().__call__(fitness, occupied, n, g)
            picked.append(out)
            return out

    res = search(lenet, seed=0, parents=Spy([8, 3, 3], share=0.9)).run(generations=30, progress=False)
    assert res.settings["parents"] == {"name": "focus", "niches": [3, 8], "share": 0.9, "confidence": 0.9999}
    assert len(res.classes) == 10
    parents = torch.cat(picked)
    share = float(torch.isin(parents, torch.tensor([3, 8])).float().mean())
    assert share == pytest.approx(0.9 + 0.1 * 2 / 10, abs=0.04)  # 29 generations x 32 draws
    with pytest.raises(InvalidArgumentError, match="niches must hold"):
        fb.search.Focus([2.7])  # type: ignore[list-item]


def test_warm_start_from_another_search(lenet: fb.models.TorchClassifier) -> None:
    wide = search(lenet, seed=0).run(generations=5, progress=False)
    elites = wide.images  # direct genomes are the images themselves
    focused = search(lenet, seed=1, classes=[3, 8], initial=elites)
    focused.step()
    assert focused.evaluations == 10  # generation 0 scored the 10 given elites
    assert torch.allclose(focused.result().confidence, wide.confidence[[3, 8]], rtol=1e-5)
    assert "initial" in focused.result().settings
    with pytest.raises(InvalidArgumentError, match="initial must be a non-empty batch"):
        search(lenet, initial=torch.zeros(0, 1, 28, 28))


def test_reduced_precision_search_reports_float32_confidence(lenet: fb.models.TorchClassifier) -> None:
    fast = lenet.replace(precision="bf16")
    res = search(fast, seed=0).run(generations=4, progress=False)
    exact = lenet.probs(res.images)[torch.arange(10), res.classes].double()
    assert torch.allclose(res.confidence, exact, rtol=0, atol=1e-6)  # the fp32 model's numbers, not bf16's


def test_checkpoint_of_another_model_of_the_same_shape_is_refused(
    lenet: fb.models.TorchClassifier, tmp_path: Path
) -> None:
    ckpt = tmp_path / "run.pt"
    search(lenet, seed=3).run(generations=2, progress=False, checkpoint=ckpt)
    untrained = fb.models.TorchClassifier(fb.models.LeNet().eval(), input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(CheckpointError, match="model: saved"):
        search(untrained, seed=3).run(generations=4, progress=False, checkpoint=ckpt)


def test_results_have_a_short_repr_and_grids_check_captions(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    res = search(lenet, seed=0).run(generations=2, progress=False)
    text = repr(res)
    assert text.startswith("FoolingResult(method='map_elites', classes=10") and "tensor" not in text
    with pytest.raises(InvalidArgumentError, match=r"one caption per image \(10\), got 3"):
        fb.save_grid(res.images, ["a", "b", "c"], tmp_path / "g.png")


def test_crossover_breeds_children_from_two_elites(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    seen: list[tuple[int, float]] = []

    class Spy(DirectEncoding):
        def crossover(
            self, genomes: torch.Tensor, mates: torch.Tensor, generator: torch.Generator, *, probability: float = 1.0
        ) -> torch.Tensor:
            seen.append((len(genomes), probability))
            assert mates.shape == genomes.shape
            return super().crossover(genomes, mates, generator, probability=probability)

    enc = Spy((1, 28, 28), mutation_rate=0.02, eta=1.0)
    crossed = MAPElites(lenet, enc, batch_size=16, seed=0, crossover=0.3)
    res = crossed.run(generations=4, progress=False)
    assert seen == [(16, 0.3)] * 3  # generations 1..3 (generation 0 is random)
    assert res.settings["crossover"] == 0.3
    plain = MAPElites(lenet, enc, batch_size=16, seed=0).run(generations=4, progress=False)
    assert "crossover" not in plain.settings and not torch.equal(res.images, plain.images)
    # same seed, same result; a checkpoint resumes it bit for bit and refuses another crossover rate
    again = MAPElites(lenet, enc, batch_size=16, seed=0, crossover=0.3).run(generations=4, progress=False)
    assert torch.equal(again.images, res.images)
    ckpt = tmp_path / "x.pt"
    MAPElites(lenet, enc, batch_size=16, seed=0, crossover=0.3).run(generations=2, progress=False, checkpoint=ckpt)
    resumed = MAPElites(lenet, enc, batch_size=16, seed=0, crossover=0.3)
    assert torch.equal(resumed.run(generations=4, progress=False, checkpoint=ckpt).images, res.images)
    with pytest.raises(CheckpointError):
        MAPElites(lenet, enc, batch_size=16, seed=0, crossover=0.5).run(generations=4, checkpoint=ckpt)


def test_crossover_bad_values(lenet: fb.models.TorchClassifier) -> None:
    with pytest.raises(InvalidArgumentError, match="crossover"):
        search(lenet, crossover=1.5)
    with pytest.raises(InvalidArgumentError, match="crossover"):
        search(lenet, crossover=float("nan"))

    class NoCrossover:
        image_shape = (1, 28, 28)

        def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
            return torch.rand(n, 1, 28, 28, generator=generator)

        def mutate(self, genomes: torch.Tensor, generator: torch.Generator, *, strength: float = 1.0) -> torch.Tensor:
            return genomes

        def render(self, genomes: torch.Tensor) -> torch.Tensor:
            return genomes

        def config(self) -> dict[str, Any]:
            return {}

        def genomes_to_state(self, genomes: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"x": genomes}

        def genomes_from_state(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
            return state["x"]

    assert isinstance(MAPElites(lenet, NoCrossover(), batch_size=8, seed=0), MAPElites)
    with pytest.raises(InvalidArgumentError, match="crossover=0.5 needs an encoding with a crossover"):
        MAPElites(lenet, NoCrossover(), batch_size=8, seed=0, crossover=0.5)


def test_ramp_strength_falls_geometrically_then_holds() -> None:
    sched = fb.search.RampStrength(start=2.0, end=0.5, generations=5)
    values = [sched(g) for g in range(1, 9)]
    assert values[0] == 2.0 and values[4:] == [0.5] * 4
    assert all(a > b for a, b in itertools.pairwise(values[:5]))
    assert math.isclose(values[2], 1.0)  # halfway in log-space
    assert sched.config() == {"name": "ramp", "start": 2.0, "end": 0.5, "generations": 5}
    assert fb.search.RampStrength(start=1.0, end=3.0, generations=1)(1) == 3.0
    with pytest.raises(InvalidArgumentError, match="end"):
        fb.search.RampStrength(end=0.0)
    with pytest.raises(InvalidArgumentError, match="generations"):
        fb.search.RampStrength(generations=0)


def test_most_confident_cuts_every_per_class_field(lenet: fb.models.TorchClassifier) -> None:
    res = search(lenet, seed=0).run(generations=3, progress=False)
    top = res.most_confident(3)
    order = res.confidence.argsort(descending=True, stable=True)[:3]
    assert top.classes.tolist() == res.classes[order].tolist()
    assert torch.equal(top.images, res.images[order]) and torch.equal(top.found_at, res.found_at[order])
    assert torch.equal(top.history.confidence, res.history.confidence[:, order])
    assert bool((top.confidence[:-1] >= top.confidence[1:]).all())
    assert len(res.most_confident(50).classes) == len(res.classes)  # k past K keeps them all
    with pytest.raises(InvalidArgumentError, match="k must be"):
        res.most_confident(0)


def retraced_and_resumed(
    clf: fb.models.TorchClassifier,
    enc: Any,
    schedule: Any,
    res: fb.search.FoolingResult,
    ckpt: Path,
) -> None:
    """A 4-generation search with ``schedule()`` retraces ``res`` from scratch and when resumed from 2 generations."""
    again = MAPElites(clf, enc, batch_size=32, seed=0, mutation_schedule=schedule()).run(generations=4, progress=False)
    assert torch.equal(again.images, res.images)
    MAPElites(clf, enc, batch_size=32, seed=0, mutation_schedule=schedule()).run(
        generations=2, progress=False, checkpoint=ckpt
    )
    resumed = MAPElites(clf, enc, batch_size=32, seed=0, mutation_schedule=schedule())
    assert torch.equal(resumed.run(generations=4, progress=False, checkpoint=ckpt).images, res.images)


def test_children_of_near_elites_are_mutated_at_near_strength(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    calls: list[tuple[torch.Tensor, float, torch.Tensor]] = []

    class Spy(DirectEncoding):
        def mutate(self, genomes: torch.Tensor, generator: torch.Generator, *, strength: float = 1.0) -> torch.Tensor:
            out = super().mutate(genomes, generator, strength=strength)
            calls.append((genomes.clone(), strength, out.clone()))
            return out

    enc = Spy((1, 28, 28), mutation_rate=0.02, eta=1.0)
    probe = MAPElites(lenet, enc, batch_size=32, seed=0, mutation_schedule=2.0)
    probe.step()
    # a threshold between the elites: some parents are near it, some are not
    conf = probe.archive.fitness.exp().sort().values
    near_confidence = float(conf[len(conf) // 2])

    def gentle(at: float = near_confidence) -> fb.search.NearStrength:
        return fb.search.NearStrength(2.0, near_confidence=at, near_strength=0.25)

    s = MAPElites(lenet, enc, batch_size=32, seed=0, mutation_schedule=gentle())
    s.step()
    calls.clear()
    children = s.ask()
    assert s._picked is not None
    near = s.archive.fitness[s._picked] >= fb.search._operators.log_level(near_confidence)  # as results decide
    assert 0 < int(near.sum()) < len(near)
    (parents, strong_at, strong), (same_parents, gentle_at, soft) = calls
    assert (strong_at, gentle_at) == (2.0, 0.25) and torch.equal(parents, same_parents)
    assert torch.equal(children[near], soft[near]) and torch.equal(children[~near], strong[~near])
    assert not torch.equal(strong, soft)
    s.cancel()
    # recorded in the settings, same seed same result, a checkpoint refuses another threshold
    res = s.run(generations=4, progress=False)
    assert res.settings["mutation_schedule"] == {
        "name": "near",
        "base": {"name": "constant", "strength": 2.0},
        "near_confidence": near_confidence,
        "near_strength": 0.25,
    }
    retraced_and_resumed(lenet, enc, gentle, res, tmp_path / "near.pt")
    with pytest.raises(CheckpointError):  # another threshold is another search
        MAPElites(lenet, enc, batch_size=32, seed=0, mutation_schedule=gentle(0.5)).run(
            generations=4, checkpoint=tmp_path / "near.pt"
        )


def test_children_of_near_elites_are_refined(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    calls: list[tuple[str, torch.Tensor]] = []

    class Spy(CPPNEncoding):
        def mutate(self, genomes: CPPNGenomes, generator: torch.Generator, *, strength: float = 1.0) -> CPPNGenomes:
            out = super().mutate(genomes, generator, strength=strength)
            calls.append(("mutate", out.weight.clone()))
            return out

        def refine(self, genomes: CPPNGenomes, generator: torch.Generator, *, scale: float = 0.02) -> CPPNGenomes:
            out = super().refine(genomes, generator, scale=scale)
            calls.append(("refine", out.weight.clone()))
            return out

    enc = Spy((1, 28, 28))
    probe = MAPElites(lenet, enc, batch_size=32, seed=0, mutation_schedule=2.0)
    probe.step()
    conf = probe.archive.fitness.exp().sort().values
    at = float(conf[len(conf) // 2])  # some parents are near it, some are not

    def refined(scale: float = 0.05) -> fb.search.NearStrength:
        return fb.search.NearStrength(2.0, near_confidence=at, refine=scale)

    s = MAPElites(lenet, enc, batch_size=32, seed=0, mutation_schedule=refined())
    s.step()
    calls.clear()
    children = s.ask()
    assert s._picked is not None and s.archive.genomes is not None
    near = s.archive.fitness[s._picked] >= math.log(at)
    assert 0 < int(near.sum()) < len(near)
    (first, strong), (second, soft) = calls
    assert (first, second) == ("mutate", "refine")
    assert torch.equal(children.weight[near], soft[near]) and torch.equal(children.weight[~near], strong[~near])
    parents = s.archive.genomes[s._picked]
    assert torch.equal(children.edge[near], parents.edge[near])  # refined: the structure is the parent's
    assert bool((children.weight[near] != parents.weight[near]).flatten(1).any(1).all())
    s.cancel()
    res = s.run(generations=4, progress=False)
    assert res.settings["mutation_schedule"] == {
        "name": "near",
        "base": {"name": "constant", "strength": 2.0},
        "near_confidence": at,
        "refine": 0.05,
    }
    retraced_and_resumed(lenet, enc, refined, res, tmp_path / "refine.pt")
    with pytest.raises(CheckpointError):  # another scale is another search
        MAPElites(lenet, enc, batch_size=32, seed=0, mutation_schedule=refined(0.1)).run(
            generations=4, checkpoint=tmp_path / "refine.pt"
        )
    # an encoding without refine() is refused when the search is built, naming the argument
    with pytest.raises(InvalidArgumentError, match="mutation_schedule=NearStrength.*refine"):
        MAPElites(lenet, ENC, batch_size=32, seed=0, mutation_schedule=refined())


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"near_confidence": 0.0}, "near_confidence"),
        ({"near_confidence": 1.0}, "near_confidence"),
        ({"near_confidence": float("nan")}, "near_confidence"),
        ({"near_confidence": 0.9, "near_strength": 0.0}, "near_strength"),
        ({"near_confidence": 0.9, "near_strength": 2.0, "base": 2.0}, "equals the base strength"),
        ({"near_confidence": 0.9, "base": fb.search.NearStrength(2.0, near_confidence=0.5)}, "another NearStrength"),
        ({"near_confidence": 0.9, "refine": 0.0}, "refine"),
        ({"near_confidence": 0.9, "refine": 1.5}, "refine"),
        ({"near_confidence": 0.9, "refine": 0.02, "near_strength": 1.0}, "not both"),
    ],
    ids=str,
)
def test_near_strength_bad_values(kw: dict[str, Any], match: str) -> None:
    base = kw.pop("base", None)
    with pytest.raises(InvalidArgumentError, match=match):
        fb.search.NearStrength(base, **kw)


def test_near_strength_needs_map_elites(lenet: fb.models.TorchClassifier) -> None:
    sched = fb.search.NearStrength(2.0, near_confidence=0.9)
    assert (
        sched(7) == 2.0 and fb.search.NearStrength(fb.search.RampStrength(generations=3), near_confidence=0.9)(3) == 0.5
    )
    with pytest.raises(InvalidArgumentError, match="needs MAPElites"):
        fb.search.SingleClassEvolution(lenet, ENC, target=3, batch_size=8, seed=0, mutation_schedule=sched)
    with pytest.raises(InvalidTypeError, match="near_confidence"):
        fb.search.NearStrength(2.0, near_confidence="0.9")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gentle_near_step_has_no_host_sync() -> None:
    clf = fb.models.lenet_mnist(device="cuda")
    sched = fb.search.NearStrength(2.0, near_confidence=0.5)
    _steps_without_sync(MAPElites(clf, ENC, batch_size=256, seed=0, mutation_schedule=sched))


@pytest.mark.parametrize("kind", ["map-elites", "one-class", "curiosity"])
def test_a_state_dict_is_a_snapshot_and_a_loaded_search_shares_nothing(
    lenet: fb.models.TorchClassifier, kind: str
) -> None:
    """On the CPU ``.cpu()`` is the tensor itself, and the archive is updated in place: both must not leak."""
    enc = fb.encodings.CPPNEncoding((1, 28, 28))

    def make() -> fb.search.Evolution:
        if kind == "one-class":
            return fb.search.SingleClassEvolution(lenet, enc, target=3, population=8, batch_size=16, seed=0)
        return MAPElites(
            lenet, enc, batch_size=16, seed=0, parents="curiosity" if kind == "curiosity" else "unmet-first"
        )

    s = make()
    s.run(generations=3, progress=False)
    state = s.state_dict()
    frozen = _checkpoint.digest(state)
    twin = make()
    twin.load_state_dict(state)
    s.run(generations=12, progress=False)  # improves the elites of the first search in place
    assert _checkpoint.digest(state) == frozen  # the snapshot did not move with the search
    assert _checkpoint.digest(twin.state_dict()) == frozen  # nor did the search loaded from it
    twin.run(generations=12, progress=False)  # and, run on, the twin retraces the first search exactly
    a, b = twin.result(), s.result()
    assert torch.equal(a.images, b.images) and torch.equal(a.confidence, b.confidence)


def test_checkpoint_number_fields_take_ints_past_floats_range() -> None:
    """math.isfinite() of an int past 1e308 raised a bare OverflowError from the field check."""
    assert _checkpoint.number({"n": 10**400}, "n", source="x", kind=int) == 10**400
    with pytest.raises(CheckpointError, match="must be a int >= 0"):
        _checkpoint.number({"n": -(10**400)}, "n", source="x", kind=int)
    with pytest.raises(CheckpointError, match="must be a int >= 0, got '12'"):  # not a bare TypeError
        _checkpoint.number({"n": "12"}, "n", source="x", kind=int)


def test_a_result_is_not_the_archive(lenet: fb.models.TorchClassifier) -> None:
    """With direct genomes the result's images were the archive's own tensor: they changed as the search went
    on, and writing into them (images * 255 for a PNG) broke the next step and the checkpoint."""
    s = search(lenet, seed=0)
    res = s.run(generations=2, progress=False)
    kept = res.images.clone()
    res.images.mul_(255)
    later = s.run(generations=4, progress=False)  # the archive did not take the write: the search goes on
    assert float(later.images.max()) <= 1.0 and torch.equal(res.images, kept * 255)  # nor the result the search's
    assert torch.equal(search(lenet, seed=0).run(generations=4, progress=False).images, later.images)


def test_a_refused_checkpoint_leaves_the_search_as_it_was(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    """run() loaded a checkpoint, then refused it (past this run's budget): the search kept the refused state,
    and a second run() without the file returned the bigger run's result."""
    ckpt = tmp_path / "run.pt"
    search(lenet, seed=0).run(generations=6, progress=False, checkpoint=ckpt)
    s = search(lenet, seed=0)
    with pytest.raises(CheckpointError, match="already past this run's budget"):
        s.run(generations=2, progress=False, checkpoint=ckpt)
    assert s.generation == 0 and s.evaluations == 0
    ckpt.unlink()
    assert s.run(generations=2, progress=False).evaluations == 64


def test_parents_and_the_stop_compare_the_target_as_results_do() -> None:
    """float32(log 0.99) is below log 0.99: an elite scored exactly that passed the float32 checks (stop, not a
    parent any more) while the result, in float64, called the class not fooled."""
    from foolbench.search._operators import log_level, unmet_pool, weighted_draw

    on_the_edge = torch.tensor([math.log(0.99), 0.0], dtype=torch.float32)
    assert math.exp(float(on_the_edge[0])) < 0.99
    pool = unmet_pool(on_the_edge, torch.tensor([True, True]), log_level(0.99))
    assert pool.tolist() == [True, False]
    g = torch.Generator().manual_seed(0)  # a curiosity score past float32's range drew the empty niche
    assert set(weighted_draw(torch.tensor([math.inf, 1.0, 0.0]), 50, g).tolist()) == {0}
    assert set(weighted_draw(torch.tensor([3e38, 3e38, 0.0]), 50, g).tolist()) == {0, 1}
    assert set(weighted_draw(torch.tensor([math.nan, 1.0, 0.0]), 50, g).tolist()) == {1}


def test_an_empty_niche_reports_zero_with_a_fast_model(lenet: fb.models.TorchClassifier) -> None:
    """With a bf16 model, a class no child entered (its scores NaN) reported the float32 confidence of the
    placeholder genome (islands: -1.0), where the float32 search reports 0."""
    fast = lenet.replace(precision="bf16")
    local = fb.search.LocalEvaluator(fast, ENC)

    def no_class_0(genomes: torch.Tensor, *, columns: torch.Tensor | None = None) -> torch.Tensor:
        out = local(genomes, columns=columns).clone()
        out[:, 0] = float("nan")
        return out

    for islands in (1, 2):
        res = search(fast, seed=0, evaluator=no_class_0, islands=islands).run(generations=2, progress=False)
        assert float(res.confidence[0]) == 0.0 and bool((res.confidence[1:] > 0).all())


def test_a_torn_search_resumes_from_its_checkpoint_with_run(
    lenet: fb.models.TorchClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run(checkpoint=...) first saved the search's own state (to restore it if the file were refused), which a
    search torn by an interrupt inside its insert cannot give: the documented recovery raised instead."""
    ckpt = tmp_path / "run.pt"
    s = search(lenet, seed=0, classes=[1, 2, 3])
    s.run(generations=2, progress=False, checkpoint=ckpt)

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(s.archive, "add_scores", interrupted)
    with pytest.raises(KeyboardInterrupt):
        s.run(generations=4, progress=False, checkpoint=ckpt)
    monkeypatch.undo()
    resumed = s.run(generations=4, progress=False, checkpoint=ckpt)
    whole = search(lenet, seed=0, classes=[1, 2, 3]).run(generations=4, progress=False)
    assert s.generation == 4 and torch.equal(resumed.images, whole.images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_search_takes_initial_genomes_from_the_cpu() -> None:
    # CPU elites as a warm start of a CUDA search: the archive took their device, its parents' indices not
    cpu = fb.encodings.CPPNEncoding((1, 28, 28)).sample(8, torch.Generator().manual_seed(0))
    clf = fb.models.lenet_mnist(device="cuda")
    for verify in (False, True):
        s = MAPElites(
            clf.replace(precision="bf16") if verify else clf,
            fb.encodings.CPPNEncoding((1, 28, 28)),
            batch_size=8,
            seed=0,
            initial=cpu,
            verify=verify,
        )
        assert s.run(generations=3, progress=False).evaluations == 24
