"""MAPElites(verify=True): a reduced-precision model screens, its float32 reference decides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import foolbench as fb
from foolbench.errors import InvalidArgumentError


def _search(clf: fb.models.TorchClassifier, *, verify: bool) -> fb.search.MAPElites:
    enc = fb.encodings.DirectEncoding((1, 28, 28))
    return fb.search.MAPElites(clf, enc, batch_size=32, seed=0, verify=verify)


def test_verified_archive_holds_float32_scores() -> None:
    fast = fb.models.lenet_mnist().replace(precision="bf16")
    reference = fast.reference()
    verified = _search(fast, verify=True)
    verified.run(generations=6, progress=False)
    exact = fb.search.LocalEvaluator(reference, verified.encoding)(verified.best_genomes())
    # every elite's fitness is what the float32 model gives it, not its bf16 score
    torch.testing.assert_close(verified.best_log_probs(), exact.diagonal(), atol=1e-5, rtol=0)
    # generation 0 checks all 32 children (empty niches); later ones only those that beat an elite
    assert 32 < verified.verifications < verified.evaluations
    plain = _search(fast, verify=False)
    plain.run(generations=6, progress=False)
    exact_plain = fb.search.LocalEvaluator(reference, plain.encoding)(plain.best_genomes()).diagonal()
    assert not torch.allclose(plain.best_log_probs(), exact_plain, atol=1e-5, rtol=0)  # bf16 scores
    assert plain.verifications == 0


def test_verify_changes_nothing_at_float32() -> None:
    clf = fb.models.lenet_mnist()
    a, b = _search(clf, verify=True), _search(clf, verify=False)
    a.run(generations=4, progress=False)
    b.run(generations=4, progress=False)
    assert torch.equal(a.best_log_probs(), b.best_log_probs()) and a.verifications == 0


def test_verify_recorded_and_resumed() -> None:
    fast = fb.models.lenet_mnist().replace(precision="bf16")
    whole = _search(fast, verify=True)
    whole.run(generations=5, progress=False)
    first = _search(fast, verify=True)
    first.run(generations=3, progress=False)
    state = first.state_dict()
    assert state["config"]["verify"] is True and "verify" not in _search(fast, verify=False).state_dict()["config"]
    again = _search(fast, verify=True)
    again.load_state_dict(state)
    assert again.verifications == first.verifications
    again.run(generations=5, progress=False)
    assert torch.equal(again.best_log_probs(), whole.best_log_probs())
    assert again.verifications == whole.verifications
    with pytest.raises(InvalidArgumentError, match="verify must be True or False"):
        _search(fast, verify=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("classes", [None, [3, 5, 8]])
def test_padded_rescoring_gives_the_same_search(classes: list[int] | None) -> None:
    """On CUDA the re-scored children are padded to a power of two; here the padding is forced on CPU."""
    fast = fb.models.lenet_mnist().replace(precision="bf16")
    enc = fb.encodings.DirectEncoding((1, 28, 28))
    plain = fb.search.MAPElites(fast, enc, classes=classes, batch_size=24, seed=0, verify=True)
    padded = fb.search.MAPElites(fast, enc, classes=classes, batch_size=24, seed=0, verify=True)
    assert not padded._pad_rescoring  # the CPU default
    padded._pad_rescoring = True
    calls: list[int] = []
    verifier = padded._reference_eval
    assert verifier is not None
    original = verifier.__call__

    def spy(genomes: torch.Tensor, **kw: object) -> torch.Tensor:
        calls.append(len(genomes))
        return original(genomes, **kw)  # type: ignore[arg-type]

    padded._reference_eval = spy  # type: ignore[assignment]
    plain.run(generations=6, progress=False)
    padded.run(generations=6, progress=False)
    torch.testing.assert_close(padded.best_log_probs(), plain.best_log_probs(), atol=1e-6, rtol=0)
    assert padded.verifications == plain.verifications
    # the checks inside the run: powers of two, or the whole batch; then result() re-scores the elites
    *checks, reported = calls
    assert checks and all(n == 24 or n & (n - 1) == 0 for n in checks)
    assert reported == len(classes or range(10))


@pytest.mark.parametrize("wrap", ["bare", "counting", "ensemble"])
def test_a_reduced_precision_search_refuses_a_float32_checkpoint(wrap: str) -> None:
    """The checkpoint records a reduced precision (also behind wrappers that have no ``precision``), so
    bf16 and float32 archives are never mixed; a float32 search records nothing (older checkpoints resume)."""
    lenet = fb.models.lenet_mnist()

    def wrapped(clf: fb.models.TorchClassifier) -> fb.models.BaseClassifier:
        if wrap == "counting":
            return fb.models.CountingClassifier(clf)
        return fb.defenses.Ensemble([clf, clf]) if wrap == "ensemble" else clf

    exact, fast = _search(wrapped(lenet), verify=False), _search(wrapped(lenet.replace(precision="bf16")), verify=False)
    exact.run(generations=1, progress=False)
    assert "precision" not in exact.state_dict()["config"]
    assert fast.state_dict()["config"]["precision"] in ("bf16", "reduced")
    with pytest.raises(fb.errors.CheckpointError, match="precision"):
        fast.load_state_dict(exact.state_dict())


def test_a_fast_model_stops_only_once_the_reported_confidences_meet_the_target() -> None:
    # the stop read the bf16 scores while result() reports the float32 ones: a run stopped "at the target"
    # with a result that was not fooled at it
    fast = fb.models.lenet_mnist().replace(precision="bf16")
    enc = fb.encodings.DirectEncoding((1, 28, 28))
    g = enc.sample(64, torch.Generator().manual_seed(0))
    pf = fb.search.LocalEvaluator(fast, enc)(g).exp()[:, 3]
    pr = fb.search.LocalEvaluator(fast.reference(), enc)(g).exp()[:, 3]
    i = int(((pf - pr) / pr).argmax())
    assert float(pf[i]) > float(pr[i])  # bf16 above float32 for this genome
    target = float((pf[i] + pr[i]) / 2)
    search = fb.search.MAPElites(fast, enc, classes=[3], batch_size=4, seed=0, initial=g[i : i + 1])
    result = search.run(target_confidence=target, generations=40, progress=False)
    assert search.generation > 1  # the bf16 score of generation 0 met the target; the float32 one did not
    assert bool(result.fooled(target).all()) or search.generation == 40
    float32 = fb.search.MAPElites(fast.reference(), enc, classes=[3], batch_size=4, seed=0, initial=g[i : i + 1])
    assert float32.reported_at(0.5) is False  # nothing evaluated yet: -inf
    float32.run(generations=1, progress=False)
    assert float32.reported_at(float(pr[i]) * 0.999) is True and float32.reported_at(1.0) is False


def test_a_fast_island_search_resumed_stops_where_the_uninterrupted_one_does(tmp_path: Path) -> None:
    # the stop's float32 answer was cached on each class's best fast score; with islands, an elite of another
    # island can change the float32 choice while those stay the same: the running search kept a stale "no"
    fast = fb.models.lenet_mnist().replace(precision="bf16")
    enc = fb.encodings.DirectEncoding((1, 28, 28))

    def search() -> fb.search.MAPElites:
        return fb.search.MAPElites(fast, enc, classes=[9, 4], batch_size=16, seed=0, islands=4)

    target = 0.000515
    whole = search()
    result = whole.run(target_confidence=target, max_evaluations=4000, progress=False)
    ckpt = tmp_path / "run.pt"
    search().run(max_evaluations=1456, checkpoint=ckpt, progress=False)
    resumed = search()
    again = resumed.run(target_confidence=target, max_evaluations=4000, checkpoint=ckpt, progress=False)
    assert resumed.generation == whole.generation < 4000 // 16
    assert torch.equal(again.confidence, result.confidence) and bool(result.fooled(target).all())
