from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import foolbench as fb
from foolbench.encodings import DirectEncoding
from foolbench.errors import CheckpointError, InvalidArgumentError, InvalidTypeError
from foolbench.search import MAPElites, SingleClassEvolution

ENC = DirectEncoding((1, 28, 28), mutation_rate=0.02, eta=1.0)


def search(clf: Any, seed: int = 0, **kw: object) -> MAPElites:
    return MAPElites(clf, ENC, batch_size=64, seed=seed, **kw)  # type: ignore[arg-type]


def test_fools_lenet_at_9999(lenet: fb.models.TorchClassifier) -> None:
    res = search(lenet, classes=[8, 2, 3]).run(max_evaluations=20_000, target_confidence=0.9999, progress=False)
    assert bool(res.fooled(0.9999).all()), res.confidence
    # the classifier agrees when asked independently
    probs = lenet.probs(res.images)
    assert bool((probs[torch.arange(3), res.classes] >= 0.9999).all())
    assert res.evaluations <= 20_000 and res.images.shape == (3, 1, 28, 28)
    assert float(res.images.min()) >= 0 and float(res.images.max()) <= 1


def test_random_images_get_low_confidence(lenet: fb.models.TorchClassifier) -> None:
    res = search(lenet).run(generations=1, progress=False)  # generation 0: unevolved noise
    assert float(res.confidence.median()) < 0.5


@pytest.mark.parametrize("model", ["mlp_mnist", "cnn_mnist"])
def test_works_on_other_classifiers(
    model: str, request: pytest.FixtureRequest, digits_test: tuple[torch.Tensor, torch.Tensor]
) -> None:
    clf: fb.models.TorchClassifier = request.getfixturevalue(model)
    x, y = digits_test
    assert (clf.predict(x) == y).float().mean() > 0.9  # a real classifier, not noise
    res = search(clf, classes=[0, 1, 7]).run(max_evaluations=15_000, target_confidence=0.99, progress=False)
    assert bool(res.fooled(0.99).all()), res.confidence


def test_bounds_other_than_unit_interval() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    clf = fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10, bounds=(0, 255))
    res = search(clf).run(generations=2, progress=False)
    assert float(res.images.max()) > 1.0 and float(res.images.max()) <= 255


def test_history_and_budget(lenet: fb.models.TorchClassifier) -> None:
    res = search(lenet).run(max_evaluations=1000, progress=False)
    assert res.evaluations == 1024  # a generation is never cut: 16 full batches of 64
    assert len(res.history) == 16 and res.history.confidence.shape == (16, 10)
    assert bool((res.history.best.diff() >= 0).all())  # elites never get worse
    assert int(res.history.evaluations[-1]) == 1024


def test_same_seed_same_result_and_global_rng_untouched(lenet: fb.models.TorchClassifier) -> None:
    state = torch.get_rng_state()
    a = search(lenet, seed=5).run(generations=5, progress=False)
    b = search(lenet, seed=5).run(generations=5, progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.images, b.images) and torch.equal(a.confidence, b.confidence)
    c = search(lenet, seed=6).run(generations=5, progress=False)
    assert not torch.equal(a.images, c.images)


def test_resume_is_bit_for_bit(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.pt"
    full = search(lenet, seed=3).run(generations=12, progress=False)
    search(lenet, seed=3).run(generations=5, progress=False, checkpoint=ckpt, checkpoint_every=2)
    resumed_search = search(lenet, seed=3)
    resumed = resumed_search.run(generations=12, progress=False, checkpoint=ckpt)
    assert torch.equal(full.images, resumed.images)
    assert torch.equal(full.history.confidence, resumed.history.confidence)
    assert resumed.evaluations == full.evaluations


def test_interrupt_saves_checkpoint(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.pt"
    calls = {"n": 0}
    local = fb.search.LocalEvaluator(lenet, ENC)

    def flaky(genomes: torch.Tensor, *, columns: torch.Tensor | None = None) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return local(genomes, columns=columns)

    s = search(lenet, seed=1, evaluator=flaky)
    with pytest.raises(KeyboardInterrupt):
        s.run(generations=10, progress=False, checkpoint=ckpt, checkpoint_every=100)
    state = fb.search.MAPElites(lenet, ENC, batch_size=64, seed=1)
    state.load_checkpoint(ckpt)
    assert state.generation == 3  # nothing finished was lost


def test_checkpoint_from_other_configuration(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.pt"
    search(lenet, seed=3).run(generations=2, progress=False, checkpoint=ckpt)
    with pytest.raises(CheckpointError, match="another configuration"):
        search(lenet, seed=4).run(generations=4, progress=False, checkpoint=ckpt)
    with pytest.raises(CheckpointError, match="another configuration"):
        search(lenet, seed=3, classes=[1, 2]).run(generations=4, progress=False, checkpoint=ckpt)


def _drop_config_key(ckpt: Path, key: str) -> None:
    """Rewrite a checkpoint as one written before its configuration had ``key``."""
    from foolbench import _checkpoint

    state = _checkpoint.load(ckpt)
    old = {k: v for k, v in state["config"].items() if k != key}
    _checkpoint.save(ckpt, _checkpoint.wrap(fmt=state["format"], version=state["version"], config=old,
                                            payload=state["payload"]))  # fmt: skip


def test_checkpoint_of_the_same_weights_behind_other_scoring_is_refused(
    lenet: fb.models.TorchClassifier, tmp_path: Path
) -> None:
    """The checkpoint named the model by its weights alone: a search on ``bit_depth(1)`` of the same
    LeNet, or on the LeNet with another normalisation, resumed it and reported its confidences."""

    ckpt = tmp_path / "run.pt"
    search(lenet, seed=3).run(generations=2, progress=False, checkpoint=ckpt)
    others = [
        fb.defenses.BitDepthReduction(lenet, bits=1),
        lenet.replace(std=0.5),
        fb.defenses.MedianSmoothing(lenet, 3),
    ]
    for other in others:
        assert fb.models.weights_digest(other) == fb.models.weights_digest(lenet)
        with pytest.raises(CheckpointError, match=r"another configuration \(scoring"):
            search(other, seed=3).run(generations=4, progress=False, checkpoint=ckpt)
    assert search(lenet.replace(batch_size=16), seed=3).run(generations=3, progress=False, checkpoint=ckpt)
    votes, mean = (fb.defenses.Ensemble([lenet, lenet], combine=c).identity() for c in ("vote", "mean_probs"))
    assert votes != mean and votes["members"] == mean["members"] == [lenet.identity()] * 2
    # a checkpoint written before the key existed is still resumed (on the other keys)
    _drop_config_key(ckpt, "scoring")
    resumed = search(lenet, seed=3)
    resumed.load_checkpoint(ckpt)
    assert resumed.generation == 3


def test_checkpoint_of_the_same_weights_in_another_architecture_is_refused(tmp_path: Path) -> None:
    """A ReLU and a Sigmoid have no weights: two networks differing only there shared the weights' digest and
    the identity, and one resumed the other's checkpoint and reported its confidences."""

    def net(act: nn.Module) -> fb.models.TorchClassifier:
        torch.manual_seed(0)
        module = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), act, nn.Linear(16, 10)).eval()
        return fb.models.TorchClassifier(module, input_shape=(1, 28, 28), num_classes=10)

    relu, sigmoid = net(nn.ReLU()), net(nn.Sigmoid())
    assert fb.models.weights_digest(relu) == fb.models.weights_digest(sigmoid)
    ckpt = tmp_path / "run.pt"
    search(relu, seed=3).run(generations=2, progress=False, checkpoint=ckpt)
    with pytest.raises(CheckpointError, match=r"another configuration \(architecture"):
        search(sigmoid, seed=3).run(generations=4, progress=False, checkpoint=ckpt)
    assert search(net(nn.ReLU()), seed=3).run(generations=3, progress=False, checkpoint=ckpt).evaluations
    # a checkpoint written before the key existed still resumes (on the other keys)
    _drop_config_key(ckpt, "architecture")
    resumed = search(relu, seed=3)
    resumed.load_checkpoint(ckpt)
    assert resumed.generation == 3


class _Plain:
    """A classifier that follows the protocol without being a module: its weights are a tensor attribute."""

    input_shape, num_classes, bounds = (1, 28, 28), 10, (0.0, 1.0)

    def __init__(self, scale: float) -> None:
        self.w = torch.full((784, 10), scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w


def test_a_plain_object_classifiers_checkpoint_is_keyed_on_its_tensors(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.pt"
    search(_Plain(0.01), seed=3).run(generations=2, progress=False, checkpoint=ckpt)
    with pytest.raises(CheckpointError, match=r"another configuration \(architecture"):
        search(_Plain(0.02), seed=3).run(generations=4, progress=False, checkpoint=ckpt)
    assert search(_Plain(0.01), seed=3).run(generations=3, progress=False, checkpoint=ckpt).evaluations


def test_corrupt_checkpoint_is_refused_and_kept(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.pt"
    search(lenet, seed=3).run(generations=2, progress=False, checkpoint=ckpt)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        search(lenet, seed=3).run(generations=4, progress=False, checkpoint=ckpt)
    assert ckpt.read_bytes() == data[: len(data) // 2]  # never overwritten by the failed run
    (tmp_path / "foreign.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError):
        search(lenet).load_checkpoint(tmp_path / "foreign.pt")


def test_pickle_payload_is_not_executed(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    path = tmp_path / "evil.pt"
    torch.save({"format": "foolbench.evolution", "x": Payload()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError):
        search(lenet).load_checkpoint(path)
    assert not marker.exists()


def test_ask_tell_order(lenet: fb.models.TorchClassifier) -> None:
    s = search(lenet)
    with pytest.raises(RuntimeError, match="without a preceding ask"):
        s.tell(torch.zeros(64, 10))
    g = s.ask()
    with pytest.raises(RuntimeError, match="ask\\(\\) called twice"):
        s.ask()
    with pytest.raises(InvalidArgumentError, match=r"log_probs must be a float tensor of shape \(64, 10\)"):
        s.tell(torch.zeros(3, 10))
    assert s.tell(lenet.log_probs(s.images(g))) == 10  # every niche is new in generation 0
    with pytest.raises(RuntimeError, match="no generation"):
        search(lenet).result()


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"classes": [10]}, InvalidArgumentError, r"classes must hold class indices in \[0, 9\], got 10"),
        ({"classes": []}, InvalidArgumentError, "at least one class"),
        ({"classes": [1, 1]}, InvalidArgumentError, "must not repeat"),
        ({"classes": ["a"]}, InvalidTypeError, "int class indices"),
        ({"batch_size": 0}, InvalidArgumentError, "batch_size must be an int >= 1"),
        ({"seed": -1}, InvalidArgumentError, "seed must be an int >= 0"),
    ],
)
def test_bad_constructor(
    lenet: fb.models.TorchClassifier, kw: dict[str, object], err: type[Exception], match: str
) -> None:
    with pytest.raises(err, match=match):
        MAPElites(lenet, ENC, **kw)  # type: ignore[arg-type]


def test_encoding_shape_must_match(lenet: fb.models.TorchClassifier) -> None:
    with pytest.raises(InvalidArgumentError, match=r"image_shape \(1, 14, 14\) must equal .* \(1, 28, 28\)"):
        MAPElites(lenet, DirectEncoding((1, 14, 14)))
    with pytest.raises(InvalidTypeError, match="classifier must follow"):
        MAPElites(torch.nn.Linear(2, 2), ENC)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({}, "needs a budget"),
        ({"max_evaluations": 0}, "max_evaluations must be an int >= 1"),
        ({"generations": -3}, "generations must be an int >= 1"),
        ({"generations": 3, "target_confidence": 1.5}, r"target_confidence must be a finite number in \(0, 1\]"),
        ({"generations": 3, "target_confidence": 0.0}, "target_confidence"),
        ({"max_seconds": 0.0}, "max_seconds"),
        ({"max_seconds": float("nan")}, "max_seconds"),
    ],
)
def test_bad_budgets(lenet: fb.models.TorchClassifier, kw: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        search(lenet).run(progress=False, **kw)  # type: ignore[arg-type]


def test_time_budget(lenet: fb.models.TorchClassifier) -> None:
    res = search(lenet).run(max_seconds=0.3, progress=False)
    assert res.evaluations > 0 and 0.3 <= res.seconds < 5.0


def test_single_class_baseline(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    evo = SingleClassEvolution(lenet, ENC, target=8, batch_size=64, seed=0)
    res = evo.run(max_evaluations=4000, target_confidence=0.99, progress=False)
    assert res.classes.tolist() == [8] and float(res.confidence[0]) >= 0.99
    assert bool((res.history.best.diff() >= 0).all())
    # resume works on the same protocol
    ckpt = tmp_path / "s.pt"
    full = SingleClassEvolution(lenet, ENC, target=3, batch_size=32, seed=1).run(generations=8, progress=False)
    SingleClassEvolution(lenet, ENC, target=3, batch_size=32, seed=1).run(
        generations=4, progress=False, checkpoint=ckpt
    )
    again = SingleClassEvolution(lenet, ENC, target=3, batch_size=32, seed=1).run(
        generations=8, progress=False, checkpoint=ckpt
    )
    assert torch.equal(full.images, again.images)
    with pytest.raises(InvalidArgumentError, match="target"):
        SingleClassEvolution(lenet, ENC, target=12)


def test_result_files(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    import json

    res = search(lenet).run(generations=3, progress=False)
    paths = res.save(tmp_path)
    summary = json.loads(paths["json"].read_text())
    assert summary["evaluations"] == 192 and len(summary["per_class"]) == 10
    assert summary["per_class"][3]["confidence"] == pytest.approx(float(res.confidence[3]))
    from PIL import Image

    with Image.open(paths["png"]) as img:
        assert img.size[0] >= 10 * 28
    assert "| class | name | confidence |" in paths["markdown"].read_text()


@pytest.mark.parametrize("bounds", [(0.0, 255.0), (-1.0, 1.0)])
def test_grids_show_images_of_other_bounds_scaled_not_clipped(bounds: tuple[float, float], tmp_path: Path) -> None:
    """A 0-255 model's elites were saved all white (clamped to [0, 1]), a -1..1 model's half black."""
    import numpy as np
    from PIL import Image

    lo, hi = bounds
    clf = fb.models.TorchClassifier(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).eval(),
        input_shape=(1, 8, 8),
        num_classes=3,
        bounds=bounds,
    )
    res = fb.search.MAPElites(clf, DirectEncoding((1, 8, 8)), batch_size=8, seed=0).run(generations=2, progress=False)
    assert float(res.images.min()) < lo + 0.2 * (hi - lo) and float(res.images.max()) > hi - 0.2 * (hi - lo)
    with Image.open(res.save_png(tmp_path / "g.png", columns=3)) as img:
        tile = np.asarray(img.convert("L"))[: 8 * 14, : 8 * 14]  # the first image, enlarged 14x
    expected = ((res.images[0, 0] - res.images.min()) / (res.images.max() - res.images.min()) * 255).round()
    assert np.abs(tile[::14, ::14].astype(float) - expected.numpy()).max() <= 1


def test_the_architecture_key_ignores_speed_settings_and_sees_plain_objects_behind_wrappers(
    tmp_path: Path,
) -> None:
    # an ensemble's members' batch size or evaluation counter is not its architecture; a plain object's
    # tensors are, also behind a counter or a defense
    ckpt = tmp_path / "ens.pt"
    counted = fb.models.CountingClassifier(fb.models.lenet_mnist())
    ensemble = fb.defenses.Ensemble([fb.models.lenet_mnist(), counted])
    search(ensemble, seed=3).run(generations=2, progress=False, checkpoint=ckpt)
    again = fb.defenses.Ensemble([fb.models.lenet_mnist(batch_size=64), counted])  # counted has counted more now
    assert search(again, seed=3).run(generations=3, progress=False, checkpoint=ckpt).evaluations
    for wrap in (fb.models.CountingClassifier, lambda c: fb.defenses.GaussianSmoothing(c, 1.0)):
        ckpt = tmp_path / "plain.pt"
        ckpt.unlink(missing_ok=True)
        search(wrap(fb.models.check_classifier(_Plain(0.01))), seed=3).run(
            generations=2, progress=False, checkpoint=ckpt
        )
        with pytest.raises(CheckpointError, match=r"another configuration \(architecture"):
            search(wrap(fb.models.check_classifier(_Plain(0.02))), seed=3).run(
                generations=3, progress=False, checkpoint=ckpt
            )
