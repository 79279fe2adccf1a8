"""A search never reports wrong numbers or writes an unusable checkpoint: column order, bad scores, torn
generations, logs on resume, budgets past a checkpoint, and arguments that name themselves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import foolbench as fb
from foolbench.encodings import DirectEncoding
from foolbench.errors import CheckpointError, InvalidArgumentError, InvalidTypeError
from foolbench.search import MAPElites, SingleClassEvolution

ENC = DirectEncoding((1, 28, 28), mutation_rate=0.02, eta=1.0)


@pytest.fixture(scope="module")
def clf() -> fb.models.TorchClassifier:
    return fb.models.lenet_mnist()


def test_every_class_in_another_order_scores_each_niche_with_its_own_class(clf: fb.models.TorchClassifier) -> None:
    classes = list(range(9, -1, -1))  # M = K: the evaluator's (B, M) columns must not be reordered again
    res = MAPElites(clf, ENC, classes=classes, batch_size=32, seed=0).run(generations=6, progress=False)
    truth = clf.probs(res.images).double()[torch.arange(10), torch.tensor(classes)]
    torch.testing.assert_close(res.confidence.double(), truth, rtol=0, atol=1e-5)
    # tell() takes (B, K) as the model's classes in order, and picks the target columns from them
    search = MAPElites(clf, ENC, classes=classes, batch_size=8, seed=0)
    genomes = search.ask()
    search.tell(clf.log_probs(search.images(genomes)))
    best = search.result()
    truth = clf.probs(best.images).double()[torch.arange(10), torch.tensor(classes)]
    torch.testing.assert_close(best.confidence.double(), truth, rtol=0, atol=1e-5)


class ProbabilityEvaluator:
    """A common mistake: scores as probabilities (in [0, 1]) rather than log-probabilities."""

    def __init__(self, clf: fb.models.TorchClassifier) -> None:
        self.clf = clf

    def __call__(self, genomes: torch.Tensor, *, columns: torch.Tensor | None = None) -> torch.Tensor:
        p = self.clf.probs(genomes) + 1.0  # above 0 everywhere (a log-probability never is)
        return p if columns is None else p[:, columns]


def test_scores_above_zero_are_refused_before_they_reach_a_checkpoint(
    clf: fb.models.TorchClassifier, tmp_path: Path
) -> None:
    search = MAPElites(clf, ENC, batch_size=8, seed=0)
    genomes = search.ask()
    with pytest.raises(InvalidArgumentError, match="log_probs gave values above 0"):
        search.tell(clf.probs(search.images(genomes)) + 1.0)
    bad = MAPElites(clf, ENC, batch_size=8, seed=0, evaluator=ProbabilityEvaluator(clf))
    ckpt = tmp_path / "c.pt"
    with pytest.raises(InvalidArgumentError, match="the evaluator gave values above 0"):
        bad.run(generations=3, checkpoint=ckpt, checkpoint_every=1, progress=False)
    assert not ckpt.exists()


def test_a_nan_score_never_becomes_the_single_class_elite(clf: fb.models.TorchClassifier) -> None:
    class NaNFirst:
        def __call__(self, genomes: torch.Tensor, *, columns: torch.Tensor | None = None) -> torch.Tensor:
            lp = clf.log_probs(genomes)
            lp[0] = torch.nan
            return lp if columns is None else lp[:, columns]

    search = SingleClassEvolution(clf, ENC, target=3, population=8, batch_size=8, seed=0, evaluator=NaNFirst())
    res = search.run(generations=4, progress=False)
    assert torch.isfinite(res.confidence).all() and torch.isfinite(res.history.confidence).all()


def test_single_class_found_at_is_when_its_image_was_found(clf: fb.models.TorchClassifier, tmp_path: Path) -> None:
    class Stalls:  # real scores for 3 generations, then children that never beat the elite
        calls = 0

        def __call__(self, genomes: torch.Tensor, *, columns: torch.Tensor | None = None) -> torch.Tensor:
            self.calls += 1
            lp = clf.log_probs(genomes) if self.calls <= 3 else torch.full((len(genomes), 10), -50.0)
            return lp if columns is None else lp[:, columns]

    search = SingleClassEvolution(clf, ENC, target=3, population=16, batch_size=16, seed=0, evaluator=Stalls())
    res = search.run(generations=10, progress=False)
    assert int(res.found_at[0]) == int(res.evaluations_to(float(res.confidence[0]) - 1e-9)[0]) <= 48 < res.evaluations
    ckpt = tmp_path / "s.pt"
    search.save_checkpoint(ckpt)
    again = SingleClassEvolution(clf, ENC, target=3, population=16, batch_size=16, seed=0)
    again.load_checkpoint(ckpt)
    assert int(again.result().found_at[0]) == int(res.found_at[0])  # kept by the checkpoint
    with pytest.raises(InvalidArgumentError, match=r"n must be at least population \(16\) in generation 0"):
        SingleClassEvolution(clf, ENC, target=3, population=16, seed=0).ask(2)


def test_an_exception_inside_a_generations_insert_keeps_the_last_whole_checkpoint(
    clf: fb.models.TorchClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = tmp_path / "c.pt"
    search = MAPElites(clf, ENC, batch_size=8, seed=0)
    original = MAPElites._insert

    def fails_at_generation_3(self: MAPElites, genomes: Any, scores: torch.Tensor) -> torch.Tensor:
        if self.generation == 3:
            raise KeyboardInterrupt
        return original(self, genomes, scores)

    monkeypatch.setattr(MAPElites, "_insert", fails_at_generation_3)
    with pytest.raises(KeyboardInterrupt):
        search.run(generations=6, checkpoint=ckpt, checkpoint_every=1, progress=False)
    with pytest.raises(RuntimeError, match="its state is torn"):
        search.ask()
    monkeypatch.setattr(MAPElites, "_insert", original)
    resumed = MAPElites(clf, ENC, batch_size=8, seed=0).run(generations=6, checkpoint=ckpt, progress=False)
    whole = MAPElites(clf, ENC, batch_size=8, seed=0).run(generations=6, progress=False)
    assert resumed.evaluations == whole.evaluations == 48
    assert torch.equal(resumed.images, whole.images)


def test_loggers_keep_every_row_when_a_checkpoint_save_is_interrupted(
    clf: fb.models.TorchClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt, log = tmp_path / "c.pt", tmp_path / "log.jsonl"
    original = fb.search.Checkpointer._save

    def interrupted_at_4(self: Any, search: Any) -> None:
        if search.generation == 4:
            raise KeyboardInterrupt
        original(self, search)

    monkeypatch.setattr(fb.search.Checkpointer, "_save", interrupted_at_4)
    with pytest.raises(KeyboardInterrupt):
        MAPElites(clf, ENC, batch_size=8, seed=0).run(
            generations=8, checkpoint=ckpt, checkpoint_every=1, progress=False, callbacks=[fb.search.JSONLLogger(log)]
        )
    monkeypatch.setattr(fb.search.Checkpointer, "_save", original)
    MAPElites(clf, ENC, batch_size=8, seed=0).run(
        generations=8, checkpoint=ckpt, progress=False, callbacks=[fb.search.JSONLLogger(log)]
    )
    rows = [json.loads(line)["generation"] for line in log.read_text().splitlines()]
    assert rows == list(range(1, 9))


def test_loggers_keep_every_row_when_a_callback_before_them_fails(
    clf: fb.models.TorchClassifier, tmp_path: Path
) -> None:
    """A callback raising at generation 3 kept the loggers after it from logging it, and the final
    checkpoint saved it: the resumed run started at 4, and the row of 3 was lost for good."""
    ckpt, log = tmp_path / "c.pt", tmp_path / "log.jsonl"

    class Boom(fb.search.Callback):
        def on_generation(self, search: Any) -> None:
            if search.generation == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        MAPElites(clf, ENC, batch_size=8, seed=0).run(
            generations=6,
            checkpoint=ckpt,
            checkpoint_every=1,
            progress=False,
            callbacks=[Boom(), fb.search.JSONLLogger(log)],
        )
    saved = MAPElites(clf, ENC, batch_size=8, seed=0)
    saved.load_checkpoint(ckpt)
    assert saved.generation == 2  # the periodic save of 2; the generation the logger missed is redone
    resumed = MAPElites(clf, ENC, batch_size=8, seed=0).run(
        generations=6, checkpoint=ckpt, progress=False, callbacks=[fb.search.JSONLLogger(log)]
    )
    rows = [json.loads(line)["generation"] for line in log.read_text().splitlines()]
    assert rows == list(range(1, 7))
    assert torch.equal(
        resumed.images, MAPElites(clf, ENC, batch_size=8, seed=0).run(generations=6, progress=False).images
    )


def test_a_checkpoint_past_the_budget_is_refused(clf: fb.models.TorchClassifier, tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pt"
    MAPElites(clf, ENC, batch_size=8, seed=0).run(max_evaluations=80, checkpoint=ckpt, progress=False)
    with pytest.raises(CheckpointError, match=r"already past this run's budget: 80 evaluations \(max_evaluations=16\)"):
        MAPElites(clf, ENC, batch_size=8, seed=0).run(max_evaluations=16, checkpoint=ckpt, progress=False)
    with pytest.raises(CheckpointError, match=r"10 generations \(generations=4\)"):
        MAPElites(clf, ENC, batch_size=8, seed=0).run(generations=4, checkpoint=ckpt, progress=False)
    # the same budget (or one within the last generation) resumes: the run is already done
    assert (
        MAPElites(clf, ENC, batch_size=8, seed=0).run(max_evaluations=75, checkpoint=ckpt, progress=False).evaluations
        == 80
    )
    with pytest.raises(CheckpointError, match="already past"):  # run_evolution names --fresh
        fb.search.run_evolution(tmp_path / "out", classes=["3"], generations=4, progress=False)
        fb.search.run_evolution(tmp_path / "out", classes=["3"], generations=2, progress=False)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda c: MAPElites(c, ENC, seed=0).run(generations=1, progress="no"),
            InvalidArgumentError,
            "progress must be",
        ),
        (lambda c: MAPElites(c, ENC, seed=0).run(generations=1, callbacks=None), InvalidTypeError, "callbacks must be"),
        (
            lambda c: MAPElites(c, ENC, seed=0).load_state_dict(None),
            CheckpointError,
            "must be a dict made by state_dict",
        ),
        (lambda c: fb.search.Checkpointer(None), InvalidTypeError, "path must be a file path"),
        (lambda c: fb.search.JSONLLogger(3), InvalidTypeError, "path must be a file path"),
        (lambda c: fb.search.JSONLLogger("x.jsonl", per_class="no"), InvalidArgumentError, "per_class must be"),
        (lambda c: fb.search.CSVLogger(""), InvalidTypeError, "path must be a file path"),
        (lambda c: fb.search.ProgressBar(total=-5), InvalidArgumentError, "total must be"),
    ],
    ids=["progress", "callbacks", "state", "checkpointer", "jsonl", "per_class", "csv", "total"],
)
def test_bad_run_arguments_name_themselves(clf: fb.models.TorchClassifier, call: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call(clf)


def test_a_bad_initial_batch_and_bad_thresholds_are_named(clf: fb.models.TorchClassifier) -> None:
    with pytest.raises(InvalidArgumentError, match=r"initial does not fit the encoding: .*\(B, 1, 28, 28\)"):
        MAPElites(clf, ENC, initial=torch.rand(3, 1, 14, 14))
    with pytest.raises(InvalidArgumentError, match=r"initial does not fit the encoding: .*values in \[0, 1\]"):
        MAPElites(clf, ENC, initial=torch.rand(3, 1, 28, 28) * 2)
    res = MAPElites(clf, ENC, batch_size=8, seed=0).run(generations=2, progress=False)
    for bad in (float("nan"), -3.0, 1.5):
        with pytest.raises(InvalidArgumentError, match="threshold must be"):
            res.fooled(bad)
        with pytest.raises(InvalidArgumentError, match="threshold must be"):
            res.evaluations_to(bad)
    with pytest.raises(InvalidArgumentError, match="thresholds must be"):
        res.summary(thresholds=(2.0,))
    with pytest.raises(InvalidArgumentError, match="thresholds must be a non-empty tuple"):
        res.summary(thresholds=())


def test_tell_keeps_no_autograd_graph_and_a_selector_object_serves_many_searches(
    clf: fb.models.TorchClassifier,
) -> None:
    search = MAPElites(clf, ENC, batch_size=8, seed=0)
    genomes = search.ask()
    search.tell(clf.log_probs(search.images(genomes).requires_grad_(True)))  # outside no_grad, as users write it
    assert not search.archive.fitness.requires_grad and not search.result().confidence.requires_grad
    selector = fb.search.Curiosity()
    first = MAPElites(clf, ENC, batch_size=8, seed=0, parents=selector).run(generations=6, progress=False)
    again = MAPElites(clf, ENC, batch_size=8, seed=0, parents=selector).run(generations=6, progress=False)
    assert torch.equal(first.images, again.images)  # the same seed: the same result, whatever ran before


def test_random_search_refuses_mutation_settings(tmp_path: Path) -> None:
    for key in ("mutation_rate", "eta"):
        with pytest.raises(InvalidArgumentError, match=f"{key} applies to the map-elites method only"):
            fb.search.run_evolution(tmp_path, method="random-search", generations=1, progress=False, **{key: 0.5})


def test_a_failed_run_never_leaves_its_outputs_beside_an_older_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from foolbench import _io

    fb.search.run_ascent(tmp_path, classes=["3"], steps=3, progress=False)
    original = _io.write_json

    def fail_summary(path: Any, obj: Any) -> Any:
        if Path(path).name == "summary.json":
            raise OSError("disk full")
        return original(path, obj)

    monkeypatch.setattr(_io, "write_json", fail_summary)
    with pytest.raises(OSError, match="disk full"):
        fb.search.run_ascent(tmp_path, classes=["3"], steps=3, seed=1, progress=False)
    monkeypatch.setattr(_io, "write_json", original)
    assert not (tmp_path / "summary.json").exists()  # so the first run's settings are computed again
    again = fb.search.run_ascent(tmp_path, classes=["3"], steps=3, progress=False)
    assert not again.get("reused")


def test_more_arguments_that_name_themselves(clf: fb.models.TorchClassifier) -> None:
    seeded = MAPElites(clf, ENC, batch_size=8, seed=0, initial=torch.rand(4, 1, 28, 28))
    with pytest.raises(InvalidArgumentError, match=r"n must be the size of initial \(4\)"):
        seeded.ask(3)
    assert len(seeded.ask(4)) == 4
    with pytest.raises(InvalidTypeError, match="checkpoint must be a file path"):
        MAPElites(clf, ENC, batch_size=8, seed=0).run(generations=1, checkpoint="", progress=False)
    x, y = fb.data.mnist_digits("test", limit=4)
    with pytest.raises(
        InvalidArgumentError, match=r"target must be a class index in \[0, 9\], got 1180591620717411303424"
    ):
        fb.search.PGD(eps=0.1, steps=2)(clf, x, y, target=2**70)
    gen = torch.Generator().manual_seed(0)
    for enc in (ENC, fb.encodings.CPPNEncoding((1, 8, 8))):
        empty = enc.sample(2, gen)[:0]
        assert len(enc.mutate(empty, gen)) == 0


@pytest.mark.parametrize(("islands", "parents"), [(1, "unmet-first"), (2, "unmet-first"), (1, "curiosity")])
def test_a_nan_child_blocks_no_other_child_of_its_batch(
    clf: fb.models.TorchClassifier, islands: int, parents: str
) -> None:
    """torch's max() ranks NaN first: one NaN-scored child took every niche's best of the batch, so no other
    child of that batch could enter any niche. It must act like a child that scores -inf everywhere."""

    class FirstRowIs:
        def __init__(self, value: float) -> None:
            self.value = value

        def __call__(self, genomes: torch.Tensor, *, columns: torch.Tensor | None = None) -> torch.Tensor:
            lp = clf.log_probs(genomes)
            lp[0] = self.value
            return lp if columns is None else lp[:, columns]

    def run(value: float) -> fb.search.MAPElites:
        search = MAPElites(
            clf, ENC, batch_size=8, seed=0, islands=islands, parents=parents, evaluator=FirstRowIs(value)
        )
        search.run(generations=5, progress=False)
        return search

    nan, low = run(float("nan")), run(-torch.inf)
    assert bool(nan.archive.occupied.all())
    assert torch.equal(nan.archive.fitness, low.archive.fitness)
    assert torch.equal(nan.archive.found_at, low.archive.found_at)
    assert torch.isfinite(nan.result().confidence).all()


def test_a_checkpoint_past_the_target_is_refused(clf: fb.models.TorchClassifier, tmp_path: Path) -> None:
    """A checkpoint of a longer run resumed with a target it had met earlier returned the longer run's state,
    not the one an uninterrupted run with that target stops at."""
    ckpt = tmp_path / "c.pt"
    first = MAPElites(clf, ENC, batch_size=8, seed=0)
    first.run(generations=8, checkpoint=ckpt, progress=False)
    reached = first.result().history.confidence.min(dim=1).values  # (G,) every class's lowest, per generation
    met = float(reached[3]) * (1 - 1e-6)  # every class was at or above it by generation 4 of 8
    assert float(reached[-1]) > float(reached[0])  # the run improved after its first generation
    with pytest.raises(CheckpointError, match=r"went on past this run's target: every class was at target_confidence="):
        MAPElites(clf, ENC, batch_size=8, seed=0).run(
            generations=8, target_confidence=met, checkpoint=ckpt, progress=False
        )
    fresh = MAPElites(clf, ENC, batch_size=8, seed=0).run(generations=8, target_confidence=met, progress=False)
    assert fresh.evaluations < 8 * 8
    # a target never met before the saved generation resumes: the run is where it would stop
    above = min(float(reached[-1]) * (1 + 1e-6), 1.0)
    resumed = MAPElites(clf, ENC, batch_size=8, seed=0).run(
        generations=8, target_confidence=above, checkpoint=ckpt, progress=False
    )
    assert resumed.evaluations == 64
    with pytest.raises(CheckpointError, match="went on past this run's target"):  # names its own checks' period
        MAPElites(clf, ENC, batch_size=8, seed=0).run(
            generations=8, target_confidence=met, checkpoint=ckpt, progress=False, sync_every=2
        )


def test_an_interrupt_right_after_a_generation_does_not_save_it_unseen(
    clf: fb.models.TorchClassifier, tmp_path: Path
) -> None:
    """Ctrl-C between the end of a generation and the loop marking it unseen let the final save keep a
    generation no logger had logged and whose time was not counted."""
    ckpt, log = tmp_path / "c.pt", tmp_path / "log.jsonl"

    class InterruptedAfterStep(MAPElites):
        def _step(self, n: int | None = None) -> torch.Tensor:
            improved = super()._step(n)
            if self.generation == 3:
                raise KeyboardInterrupt
            return improved

    with pytest.raises(KeyboardInterrupt):
        InterruptedAfterStep(clf, ENC, batch_size=8, seed=0).run(
            generations=6, checkpoint=ckpt, checkpoint_every=1, progress=False, callbacks=[fb.search.JSONLLogger(log)]
        )
    saved = MAPElites(clf, ENC, batch_size=8, seed=0)
    saved.load_checkpoint(ckpt)
    assert saved.generation == 2  # the last generation every callback saw
    logged = [json.loads(line)["generation"] for line in log.read_text().splitlines()]
    assert logged == [1, 2]


def test_bad_budgets_are_refused_before_an_earlier_runs_outputs_are_deleted(tmp_path: Path) -> None:
    """run_evolution(fresh=True) deleted the folder's checkpoint and outputs, then run() refused the budget."""
    out = tmp_path / "out"
    fb.search.run_evolution(out, classes=["3"], generations=2, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert {"summary.json", "images.png", "checkpoint.pt"} <= set(before)
    for bad, match in (
        ({"max_evaluations": 0}, "max_evaluations must be"),
        ({"generations": 0}, "generations must be"),
        ({"generations": 2, "checkpoint_every": 0}, "checkpoint_every must be"),
        ({"max_evaluations": None}, "needs a budget"),
    ):
        with pytest.raises(InvalidArgumentError, match=match):
            fb.search.run_evolution(out, classes=["3"], progress=False, fresh=True, **bad)
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")} == before


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}


@pytest.mark.parametrize(
    ("run", "good", "bad", "match"),
    [
        (fb.search.run_uap, {"fit": 10, "held_out": 10, "max_passes": 1}, {"eps": -1.0}, "eps must be"),
        (fb.search.run_uap, {"fit": 10, "held_out": 10, "max_passes": 1}, {"batch_size": 0}, "batch_size must be"),
        (fb.search.run_uap, {"fit": 10, "held_out": 10, "max_passes": 1}, {"model": "nope"}, "model must be"),
        (fb.search.run_ascent, {"classes": ["3"], "steps": 2}, {"lr": -1.0}, "lr must be"),
        (fb.search.run_ascent, {"classes": ["3"], "steps": 2}, {"classes": ["zz"]}, "classes must"),
        (fb.search.run_ascent, {"classes": ["3"], "steps": 2}, {"target_confidence": 2.0}, "target_confidence must"),
        (fb.search.run_evolution, {"classes": ["3"], "generations": 1}, {"batch_size": 0}, "batch_size must be"),
        (fb.search.run_evolution, {"classes": ["3"], "generations": 1}, {"model": "nope"}, "model must be"),
        (fb.search.run_evolution, {"classes": ["3"], "generations": 1}, {"classes": ["zz"]}, "classes must"),
    ],
    ids=[
        "uap-eps",
        "uap-batch_size",
        "uap-model",
        "ascent-lr",
        "ascent-classes",
        "ascent-target",
        "evolution-batch_size",
        "evolution-model",
        "evolution-classes",
    ],
)
def test_a_bad_argument_leaves_a_finished_runs_folder_as_it_was(
    tmp_path: Path, run: Any, good: dict[str, Any], bad: dict[str, Any], match: str
) -> None:
    """The recipes deleted the finished run's summary.json, then built the search and refused the argument."""
    run(tmp_path, progress=False, **good)
    before = _files(tmp_path)
    assert "summary.json" in before
    with pytest.raises(InvalidArgumentError, match=match):
        run(tmp_path, progress=False, **{**good, **bad})
    assert _files(tmp_path) == before


def test_a_refused_checkpoint_leaves_a_finished_runs_summary(tmp_path: Path) -> None:
    """run_evolution deleted the finished run's summary.json, then the search refused the checkpoint (other
    settings, or a budget it is already past): the folder kept its images and report but lost its summary."""
    fb.search.run_evolution(tmp_path, max_evaluations=64, batch_size=32, classes=[1, 2], progress=False)
    before = _files(tmp_path)
    for bad in ({"seed": 1}, {"max_evaluations": 32}):
        with pytest.raises(fb.errors.CheckpointError):
            fb.search.run_evolution(
                tmp_path, **{"max_evaluations": 64, "batch_size": 32, "classes": [1, 2], **bad}, progress=False
            )
        assert _files(tmp_path) == before
    more = fb.search.run_evolution(tmp_path, max_evaluations=128, batch_size=32, classes=[1, 2], progress=False)
    assert more["results"]["evaluations"] == 128  # an accepted resume replaces it


def test_run_uap_and_run_ascent_pass_progress_to_the_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_uap and run_ascent accepted progress but never handed it on: their fit and ascent showed no bar."""
    seen: list[tuple[str, Any]] = []
    fit, ascend = fb.search.UniversalPerturbation.fit, fb.search.GradientAscent.run

    def fit_spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(("fit", kwargs.get("progress")))
        return fit(self, *args, **{**kwargs, "progress": False})

    def ascend_spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(("ascend", kwargs.get("progress")))
        return ascend(self, *args, **{**kwargs, "progress": False})

    monkeypatch.setattr(fb.search.UniversalPerturbation, "fit", fit_spy)
    monkeypatch.setattr(fb.search.GradientAscent, "run", ascend_spy)
    for progress in (True, False):
        fb.search.run_uap(tmp_path / f"uap-{progress}", fit=10, held_out=10, max_passes=1, progress=progress)
        fb.search.run_ascent(tmp_path / f"ascent-{progress}", classes=["3"], steps=2, progress=progress)
    assert seen == [("fit", True), ("ascend", True), ("fit", False), ("ascend", False)]


def _result(confidence: list[float]) -> fb.search.FoolingResult:
    k = len(confidence)
    conf = torch.tensor(confidence, dtype=torch.float64)
    return fb.search.FoolingResult(
        images=torch.zeros(k, 1, 2, 2),
        confidence=conf,
        classes=torch.arange(k),
        evaluations=k,
        seconds=0.1,
        history=fb.search.History(torch.tensor([k]), conf[None]),
        class_names=tuple(str(i) for i in range(k)),
        method="demo",
        found_at=torch.full((k,), k),
    )


def test_summary_keys_of_nearby_thresholds_are_exact_and_distinct() -> None:
    """summary named its keys with :g: 0.9999999 became fooled_at_1, and (0.9999999, 1.0) shared one key."""
    s = _result([0.99999995, 0.5]).summary(thresholds=(0.9999999, 1.0))
    assert (s["fooled_at_0.9999999"], s["fooled_at_1"]) == (1, 0)
    row = s["per_class"][0]
    assert (row["evaluations_to_0.9999999"], row["evaluations_to_1"]) == (2, None)
    default = _result([0.99999995, 0.5]).summary()  # the keys :g writes exactly are those of before
    assert {k for k in default if k.startswith("fooled_at_")} == {"fooled_at_0.99", "fooled_at_0.9999"}
    assert {k for k in default["per_class"][0] if k.startswith("evaluations_to_")} == {
        "evaluations_to_0.99",
        "evaluations_to_0.9999",
    }


def test_median_confidence_is_the_lower_median_for_an_even_number_of_classes() -> None:
    """Pins the documented convention (published figures rely on it): torch.median's lower median, not the mean."""
    ten = [0.05 * i for i in range(10, 0, -1)]  # 0.5, 0.45, ..., 0.05: the 5th smallest is 0.25
    res = _result(ten)
    assert res.summary()["median_confidence"] == pytest.approx(0.25)
    assert res.history.median.tolist() == pytest.approx([0.25])
    assert "median_confidence=0.250000" in repr(res)
    assert "median confidence 0.250000" in res.to_markdown()
    assert _result([0.2, 0.8]).summary()["median_confidence"] == 0.2  # never above the usual median (0.5)


def test_run_ascent_takes_no_target(tmp_path: Path) -> None:
    """target_confidence=None (every step, as GradientAscent.run takes it) was refused as not a number."""
    summary = fb.search.run_ascent(tmp_path, steps=2, classes=[1], target_confidence=None, progress=False)
    assert summary["settings"]["target_confidence"] is None
    assert summary["results"]["evaluations"] == 3  # all steps, then the pass that scores the result


def test_a_random_search_report_is_not_titled_evolved(tmp_path: Path) -> None:
    """run_evolution(method="random-search") titled its report "Evolved fooling images"."""
    fb.search.run_evolution(tmp_path, method="random-search", max_evaluations=32, batch_size=32, classes=[1],
                            progress=False)  # fmt: skip
    assert "Random-search images for lenet-mnist" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("missing", ["config", "genomes_to_state", "genomes_from_state"])
def test_an_encoding_without_its_report_or_checkpoint_members_is_refused_before_the_search(
    clf: fb.models.TorchClassifier, missing: str
) -> None:
    # result() and checkpoints call these: a search without them ran its whole budget, then failed
    members: dict[str, Any] = {
        "image_shape": (1, 28, 28),
        "sample": lambda self, n, g: torch.rand(n, 1, 28, 28, generator=g),
        "mutate": lambda self, x, g, strength=1.0: x,
        "render": lambda self, x: x,
        "config": lambda self: {},
        "genomes_to_state": lambda self, x: {"x": x},
        "genomes_from_state": lambda self, state: state["x"],
    }
    del members[missing]
    encoding = type("Partial", (), members)()
    with pytest.raises(InvalidTypeError, match=f"encoding must follow .*missing '{missing}'"):
        MAPElites(clf, encoding, batch_size=8, seed=0)
    fb.search.LocalEvaluator(clf, encoding)  # an evaluator only renders and scores


def test_recipes_take_a_torch_device_and_array_classes_and_refuse_a_checkpoint_under_a_file(tmp_path: Path) -> None:
    # accepted by the checks, these failed only when the finished run wrote its summary (not JSON); a checkpoint
    # path under a file failed at the first save, after the search
    import numpy as np

    s = fb.search.run_evolution(
        tmp_path / "evo", classes=torch.tensor([3, 7]), generations=2, device=torch.device("cpu"), progress=False
    )
    assert s["settings"]["classes"] == [3, 7] and s["settings"]["device"] == "cpu"
    again = fb.search.run_evolution(
        tmp_path / "evo", classes=np.array([3, 7]), generations=2, device="cpu", progress=False
    )
    assert again["settings"] == s["settings"]  # the same run as the first one
    with pytest.raises(InvalidTypeError, match="classes must be a list of class indices or names, got int 3"):
        fb.search.run_evolution(tmp_path / "bad", classes=3, generations=2, progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match="which is a file"):
        fb.search.run_evolution(tmp_path / "ck", generations=2, checkpoint=blocker / "c.pt", progress=False)
    assert not (tmp_path / "ck" / "summary.json").exists()
    a = fb.search.run_ascent(tmp_path / "asc", classes=[1], steps=2, device=torch.device("cpu"), progress=False)
    assert a["settings"]["device"] == "cpu"
