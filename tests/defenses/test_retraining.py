from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import foolbench as fb
from foolbench import _checkpoint
from foolbench.defenses import AdversarialFineTuning, FoolingClassRetraining
from foolbench.errors import CheckpointError, InvalidArgumentError, InvalidTypeError

Digits = tuple[torch.Tensor, torch.Tensor]


def retraining(lenet: fb.models.TorchClassifier, train: Digits, test: Digits, **kw: object) -> FoolingClassRetraining:
    options: dict[str, object] = {"rounds": 1, "searches_per_round": 1, "max_evaluations": 20_000, "epochs": 2}
    options.update(kw)
    return FoolingClassRetraining(lenet, fb.models.LeNet, *train, *test, **options)  # type: ignore[arg-type]


def strip(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_fooling_class_retraining_rounds_and_resume(
    lenet: fb.models.TorchClassifier, digits_train: Digits, digits_test: Digits, tmp_path: Path
) -> None:
    train = (digits_train[0][:2000], digits_train[1][:2000])
    test = (digits_test[0][:500], digits_test[1][:500])
    rng = torch.random.get_rng_state()
    ckpt = tmp_path / "fcr.pt"
    first = retraining(lenet, train, test)
    table = first.run(checkpoint=ckpt, progress=False)
    assert torch.equal(rng, torch.random.get_rng_state())  # global RNG untouched
    assert [r["round"] for r in table.rows] == [0, 1]
    r0, r1 = table.rows
    assert r0["classes"] == 10 and r1["classes"] == 11
    assert first.classifier.num_classes == 11 and first.classifier.class_names[-1] == "fooling"
    assert float(r0["fresh_median_confidence"]) >= 0.99  # the undefended model is fooled
    assert float(r1["round0_caught"]) >= 0.9  # the retrained model rejects the round-0 images
    assert float(r1["clean_accuracy"]) >= 0.9  # and still reads real digits
    # a longer run resumes after the finished rounds and equals an uninterrupted run
    longer = retraining(lenet, train, test, rounds=2)
    resumed = longer.run(checkpoint=ckpt, progress=False)
    assert torch.equal(rng, torch.random.get_rng_state())  # a resumed run leaves the global RNG as found
    assert strip(resumed.rows[:2]) == strip(table.rows)
    full = retraining(lenet, train, test, rounds=2).run(progress=False)
    assert strip(resumed.rows) == strip(full.rows)
    # a run asking for fewer rounds than the checkpoint holds shows only those, with its own model
    short = retraining(lenet, train, test, rounds=1)
    assert strip(short.run(checkpoint=ckpt, progress=False).rows) == strip(table.rows)
    assert torch.equal(rng, torch.random.get_rng_state())
    assert fb.models.weights_digest(short.classifier) == fb.models.weights_digest(first.classifier)
    assert fb.models.weights_digest(longer.classifier) != fb.models.weights_digest(first.classifier)
    with pytest.raises(CheckpointError, match=r"another configuration \(epochs: saved"):
        retraining(lenet, train, test, epochs=3).run(checkpoint=ckpt, progress=False)
    with pytest.raises(CheckpointError, match=r"another configuration \(data: saved"):
        retraining(lenet, (train[0][:1999], train[1][:1999]), test).run(checkpoint=ckpt, progress=False)
    # the same weights with another normalisation: the key held the weights alone and resumed it
    with pytest.raises(CheckpointError, match=r"another configuration \(scoring: saved"):
        retraining(lenet.replace(mean=0.5, std=0.5), train, test).run(checkpoint=ckpt, progress=False)


def test_fooling_class_retraining_refuses_another_models_checkpoint(
    lenet: fb.models.TorchClassifier,
    digits_train: Digits,
    digits_test: Digits,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    train = (digits_train[0][:300], digits_train[1][:300])
    test = (digits_test[0][:300], digits_test[1][:300])
    ckpt = tmp_path / "fcr.pt"
    opts = {"max_evaluations": 640, "epochs": 1}
    table = retraining(lenet, train, test, **opts).run(checkpoint=ckpt, progress=False)
    assert float(table.rows[0]["clean_accuracy"]) >= 0.9
    capsys.readouterr()
    again = retraining(lenet, train, test, rounds=2, **opts).run(checkpoint=ckpt, progress=True)
    out = capsys.readouterr()
    assert out.out == "" and "fooling-class retraining" in out.err  # a tqdm bar on stderr, never print
    assert len(again.rows) == 3
    untrained = lenet.replace(module=fb.models.LeNet().eval())  # same architecture and preprocessing
    with pytest.raises(CheckpointError, match=r"another configuration \(model: saved"):
        retraining(untrained, train, test, **opts).run(checkpoint=ckpt, progress=False)
    fresh = retraining(untrained, train, test, **opts).run(checkpoint=tmp_path / "other.pt", progress=False)
    assert float(fresh.rows[0]["clean_accuracy"]) <= 0.3  # its own, untrained accuracy
    with pytest.raises(CheckpointError, match=r"another configuration \(architecture: saved"):
        FoolingClassRetraining(lenet, lambda k: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, k)),
                               *train, *test, rounds=1, searches_per_round=1, **opts).run(checkpoint=ckpt, progress=False)  # fmt: skip


def test_adversarial_fine_tuning(
    lenet: fb.models.TorchClassifier, digits_train: Digits, digits_test: Digits, tmp_path: Path
) -> None:
    before = {k: v.clone() for k, v in lenet.module.state_dict().items()}
    uap = fb.search.UniversalPerturbation(eps=0.3, method="sgd", max_passes=10, delta=0.0)
    make = lambda rounds: AdversarialFineTuning(
        lenet, *digits_train, *digits_test, uap=uap, fit_images=300, rounds=rounds, epochs=1
    )
    ckpt = tmp_path / "aft.pt"
    table = make(1).run(checkpoint=ckpt, progress=False)
    r0, r1 = table.rows
    assert float(r0["fooling_rate"]) >= 0.3  # the UAP fools the undefended model on held-out digits
    assert float(r1["previous_uap_fooling_rate"]) < float(r0["fooling_rate"]) / 2  # fine-tuning fixed that one
    assert float(r1["clean_accuracy"]) >= 0.95
    assert all(torch.equal(v, lenet.module.state_dict()[k]) for k, v in before.items())  # original untouched
    first = make(1)
    rows = strip(first.run(checkpoint=ckpt, progress=False).rows)  # read back from the checkpoint
    assert rows == strip(table.rows)
    resumed = make(2).run(checkpoint=ckpt, progress=False)
    assert strip(resumed.rows) == strip(make(2).run(progress=False).rows)
    again = make(1)  # fewer rounds than the checkpoint holds: only those, with that round's model
    assert strip(again.run(checkpoint=ckpt, progress=False).rows) == rows and len(again.perturbations) == 2
    assert fb.models.weights_digest(again.classifier) == fb.models.weights_digest(first.classifier)
    state = torch.load(ckpt, weights_only=True)
    del state["payload"]["perturbations"]
    torch.save(state, tmp_path / "cut.pt")  # edited without its checksum
    with pytest.raises(CheckpointError, match="damaged or was edited"):
        make(1).run(checkpoint=tmp_path / "cut.pt", progress=False)
    state["checksum"] = _checkpoint.digest([state["config"], state["payload"]])
    torch.save(state, tmp_path / "cut.pt")  # edited and re-signed: the field check names it
    with pytest.raises(CheckpointError, match="missing or corrupt field 'perturbations'"):
        make(1).run(checkpoint=tmp_path / "cut.pt", progress=False)
    untrained = lenet.replace(module=fb.models.LeNet().eval())
    with pytest.raises(CheckpointError, match=r"another configuration \(model: saved"):
        AdversarialFineTuning(untrained, *digits_train, *digits_test, uap=uap, fit_images=300, rounds=1, epochs=1).run(
            checkpoint=ckpt, progress=False
        )


def test_bad_arguments(lenet: fb.models.TorchClassifier, digits_train: Digits, digits_test: Digits) -> None:
    x, y = digits_train[0][:100], digits_train[1][:100]
    with pytest.raises(InvalidArgumentError, match="rounds must be an int >= 1"):
        FoolingClassRetraining(lenet, fb.models.LeNet, x, y, x, y, rounds=0)
    with pytest.raises(InvalidArgumentError, match="train_images must hold at least one image"):
        FoolingClassRetraining(lenet, fb.models.LeNet, x[:0], y[:0], x, y)
    with pytest.raises(InvalidArgumentError, match="test_labels"):
        FoolingClassRetraining(lenet, fb.models.LeNet, x, y, x, y + 20)
    with pytest.raises(InvalidTypeError, match="model_fn must be callable"):
        FoolingClassRetraining(lenet, "lenet", x, y, x, y)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="TorchClassifier"):
        FoolingClassRetraining(fb.defenses.MedianSmoothing(lenet, 3), fb.models.LeNet, x, y, x, y)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="must return an nn.Module"):
        FoolingClassRetraining(lenet, lambda k: None, x, y, x, y, searches_per_round=1, max_evaluations=64).run(  # type: ignore[arg-type,return-value]
            progress=False
        )
    for bad in (1.9, -3, "7", True):
        with pytest.raises((InvalidArgumentError, InvalidTypeError), match="seed"):
            FoolingClassRetraining(lenet, fb.models.LeNet, x, y, x, y, seed=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="fine_tune must be True or False"):
        FoolingClassRetraining(lenet, fb.models.LeNet, x, y, x, y, fine_tune="no")  # type: ignore[arg-type]
    uap = fb.search.UniversalPerturbation(eps=0.1)
    with pytest.raises((InvalidArgumentError, InvalidTypeError), match="seed"):
        AdversarialFineTuning(lenet, x, y, x, y, uap=uap, fit_images=50, seed=1.9)  # type: ignore[arg-type]
    # its checkpoints are keyed on the UAP's repr: every setting that changes the perturbation is in it
    reprs = {
        repr(fb.search.UniversalPerturbation(eps=0.1, **kw))
        for kw in ({}, {"step_size": 0.2}, {"deepfool_steps": 3}, {"overshoot": 0.5})
    }
    assert len(reprs) == 4
    with pytest.raises(InvalidArgumentError, match="fit_images must be at most the 100"):
        AdversarialFineTuning(lenet, x, y, x, y, uap=uap, fit_images=500)
    with pytest.raises(InvalidArgumentError, match="rounds"):
        AdversarialFineTuning(lenet, x, y, x, y, uap=uap, fit_images=50, rounds=0)
    with pytest.raises(InvalidTypeError, match="uap must be"):
        AdversarialFineTuning(lenet, x, y, x, y, uap=0.3, fit_images=50)  # type: ignore[arg-type]


def test_fooling_class_draws_from_the_whole_pool_once_it_outgrows_a_class(
    lenet: fb.models.TorchClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the pool held more images than a real class, training took its first rows alone: the
    oldest rounds' images, never those of later rounds."""
    import foolbench.defenses._retraining as retraining_module

    xtr, ytr = fb.models.mnist_digits("train", limit=200)
    xte, yte = fb.models.mnist_digits("test", limit=20)
    fcr = fb.defenses.FoolingClassRetraining(lenet, fb.models.LeNet, xtr, ytr, xte, yte, rounds=2, epochs=1)
    seen: dict[str, torch.Tensor] = {}
    monkeypatch.setattr(retraining_module, "train_classifier", lambda m, x, y, **k: seen.update(x=x, y=y))
    pool = torch.cat([torch.zeros(30, 1, 28, 28), torch.ones(30, 1, 28, 28)])  # round 0's, then round 1's
    fcr._train(pool, lenet, 2)
    extra, labels = seen["x"][200:], seen["y"][200:]
    assert extra.shape[0] == 20 and bool((labels == 10).all())  # as many as a real class, labelled K
    from_later = int((extra.flatten(1).mean(1) == 1).sum())
    assert 0 < from_later < 20
    fcr._train(pool, lenet, 2)
    assert torch.equal(seen["x"][200:], extra)  # the draw is seeded
    fcr._train(pool[:15], lenet, 2)  # fewer than a class: every one, repeated
    assert seen["x"].shape[0] == 220 and torch.equal(seen["x"][200:215], pool[:15])


def test_fooling_class_retraining_takes_an_executor_whose_map_is_an_iterator(
    lenet: fb.models.TorchClassifier, digits_train: Digits, digits_test: Digits
) -> None:
    """A round read the executor's results three times: a concurrent.futures executor, whose map returns
    an iterator, left the second and third reads empty (torch.cat(): expected a non-empty list)."""
    train = (digits_train[0][:200], digits_train[1][:200])
    test = (digits_test[0][:50], digits_test[1][:50])
    options = {"searches_per_round": 2, "max_evaluations": 128, "epochs": 1}
    serial = retraining(lenet, train, test, **options).run(progress=False)
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = retraining(lenet, train, test, executor=pool, **options).run(progress=False)
    assert strip(threaded.rows) == strip(serial.rows)
    assert [r["search_evaluations"] for r in serial.rows] == [256, 256]  # both searches ran, every round


def test_fresh_models_leave_the_gpu_generators_alone(
    lenet: fb.models.TorchClassifier, digits_train: Digits, digits_test: Digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    # seeding a round's fresh model must not reseed the CUDA generators for the rest of the process
    # (torch.manual_seed does, and fork_rng(devices=[]) restores only the CPU's)
    calls: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(seed))
    defense = retraining(lenet, digits_train, digits_test)
    cpu = torch.random.get_rng_state()
    first, again = defense._fresh(1), defense._fresh(1)
    assert calls == []
    assert torch.equal(cpu, torch.random.get_rng_state())
    assert fb.models.weights_digest(first) == fb.models.weights_digest(again)  # still seeded
    assert fb.models.weights_digest(first) != fb.models.weights_digest(defense._fresh(2))


def test_a_retraining_checkpoint_of_another_original_architecture_is_refused(
    digits_train: Digits, digits_test: Digits, tmp_path: Path
) -> None:
    # the original's weights and identity alone: a ReLU and a Sigmoid network with the same weights shared them
    def original(act: torch.nn.Module) -> fb.models.TorchClassifier:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), act, torch.nn.Linear(16, 10))
        return fb.models.TorchClassifier(net.eval(), input_shape=(1, 28, 28), num_classes=10)

    train, test = (digits_train[0][:200], digits_train[1][:200]), (digits_test[0][:100], digits_test[1][:100])
    opts = {"max_evaluations": 64, "epochs": 1}
    ckpt = tmp_path / "fcr.pt"
    retraining(original(torch.nn.ReLU()), train, test, **opts).run(checkpoint=ckpt, progress=False)
    with pytest.raises(CheckpointError, match=r"another configuration \(original_architecture: saved"):
        retraining(original(torch.nn.Sigmoid()), train, test, **opts).run(checkpoint=ckpt, progress=False)


def test_retraining_trains_on_float64_images_as_on_their_float32_values(lenet: fb.models.TorchClassifier) -> None:
    """Float64 images were kept as float64 and fed to the float32 model's training after round 0 had run:
    "Input type (double) and bias type (float) should be the same"."""
    xtr, ytr = fb.models.mnist_digits("train", limit=40)
    xte, yte = fb.models.mnist_digits("test", limit=20)
    uap = fb.search.UniversalPerturbation(eps=0.2, max_passes=1)
    aft = lambda x: AdversarialFineTuning(lenet, x, ytr, xte.double(), yte, uap=uap, fit_images=20, rounds=1, epochs=1)
    doubled, single = aft(xtr.double()), aft(xtr)
    assert strip(doubled.run(progress=False).rows) == strip(single.run(progress=False).rows)
    assert fb.models.weights_digest(doubled.classifier) == fb.models.weights_digest(single.classifier)
    assert doubled._key()["data"] == single._key()["data"]
    # float32 images keep their bytes: the data digest of existing checkpoints
    raw = {"train_x": xtr, "train_y": ytr, "test_x": xte, "test_y": yte}
    same = AdversarialFineTuning(lenet, xtr, ytr, xte, yte, uap=uap, fit_images=20, rounds=1, epochs=1)
    assert same._key()["data"] == fb.models._classifier.tensors_digest(raw)
    fcr = lambda x: FoolingClassRetraining(
        lenet, fb.models.LeNet, x, ytr, xte, yte, rounds=1, searches_per_round=1, max_evaluations=64, epochs=1
    )
    doubled_fcr, single_fcr = fcr(xtr.double()), fcr(xtr)
    assert strip(doubled_fcr.run(progress=False).rows) == strip(single_fcr.run(progress=False).rows)
    assert fb.models.weights_digest(doubled_fcr.classifier) == fb.models.weights_digest(single_fcr.classifier)


def test_adversarial_fine_tuning_keys_checkpoints_on_the_exact_pgd_eps(
    lenet: fb.models.TorchClassifier, tmp_path: Path
) -> None:
    """The key held repr(pgd), whose eps has six digits: PGD(eps=8/255) resumed PGD(eps=0.0313725)'s checkpoint."""
    xtr, ytr = fb.models.mnist_digits("train", limit=20)
    xte, yte = fb.models.mnist_digits("test", limit=10)
    uap = fb.search.UniversalPerturbation(eps=0.2, max_passes=1)
    make = lambda eps: AdversarialFineTuning(
        lenet, xtr, ytr, xte, yte, uap=uap, fit_images=10, rounds=1, epochs=1, pgd=fb.search.PGD(eps=eps, steps=2)
    )
    assert make(8 / 255)._key() != make(0.0313725)._key()
    # the six-digit text of repr(pgd), as before
    legacy = "PGD(eps=0.0313725, steps=2, step_size=None, norm='inf', random_start=True)"
    assert make(8 / 255)._key()["pgd"] == make(0.0313725)._key()["pgd"] == legacy
    ckpt = tmp_path / "aft.pt"
    make(8 / 255).run(checkpoint=ckpt, progress=False)
    with pytest.raises(CheckpointError, match=r"another configuration \(pgd_exact: saved"):
        make(0.0313725).run(checkpoint=ckpt, progress=False)
    # a checkpoint from before the exact text (no pgd_exact) still resumes
    state = torch.load(ckpt, weights_only=True)
    del state["config"]["pgd_exact"]
    state["checksum"] = _checkpoint.digest([state["config"], state["payload"]])
    torch.save(state, tmp_path / "old.pt")
    again = make(8 / 255)
    assert len(again.run(checkpoint=tmp_path / "old.pt", progress=False).rows) == 2
    assert AdversarialFineTuning(lenet, xtr, ytr, xte, yte, uap=uap, fit_images=10, rounds=1, epochs=1)._key()[
        "pgd"
    ] == repr(None)


def test_retraining_refuses_a_seed_whose_derived_seeds_overflow(lenet: fb.models.TorchClassifier) -> None:
    """A seed near 2**64 was accepted and failed in a later round: "Overflow when unpacking long long"."""
    x, y = fb.models.mnist_digits("train", limit=20)
    top = 2**64 - 1
    for rounds, searches in ((1, 1), (2, 3)):
        largest = 1000 * rounds + searches - 1  # the last round's last search
        kw = {"rounds": rounds, "searches_per_round": searches}
        assert (
            FoolingClassRetraining(lenet, fb.models.LeNet, x, y, x, y, seed=top - largest, **kw).seed == top - largest
        )
        with pytest.raises(InvalidArgumentError, match=rf"seed must be an int in \[0, {top - largest}\]"):
            FoolingClassRetraining(lenet, fb.models.LeNet, x, y, x, y, seed=top - largest + 1, **kw)
    uap = fb.search.UniversalPerturbation(eps=0.1)
    assert AdversarialFineTuning(lenet, x, y, x, y, uap=uap, fit_images=10, rounds=3, seed=top - 3).seed == top - 3
    with pytest.raises(InvalidArgumentError, match=rf"seed must be an int in \[0, {top - 3}\]"):
        AdversarialFineTuning(lenet, x, y, x, y, uap=uap, fit_images=10, rounds=3, seed=top - 2)
