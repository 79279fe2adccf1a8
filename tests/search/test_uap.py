from __future__ import annotations

from pathlib import Path

import pytest
import torch

import foolbench as fb
from foolbench.errors import InvalidArgumentError
from foolbench.search import UniversalPerturbation, fooling_rate, transfer_matrix


@pytest.mark.parametrize("method", ["sgd", "deepfool"])
def test_uap_fools_held_out_digits(
    method: str,
    lenet: fb.models.TorchClassifier,
    digits_train: tuple[torch.Tensor, torch.Tensor],
    digits_test: tuple[torch.Tensor, torch.Tensor],
) -> None:
    fit = digits_train[0][:200]
    held_out = digits_test[0][:500]
    passes = 8 if method == "sgd" else 2
    uap = UniversalPerturbation(eps=0.3, method=method, max_passes=passes, batch_size=32, seed=0).fit(lenet, fit)
    assert float(uap.perturbation.abs().max()) <= 0.3 + 1e-6
    rate = fooling_rate(lenet, held_out, uap.perturbation)
    noise = torch.empty(1, 28, 28).uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(0))
    baseline = fooling_rate(lenet, held_out, noise)  # random noise of the same size
    assert rate >= 0.2 and rate > 3 * baseline, (rate, baseline)
    assert len(uap.history) == uap.passes


def test_l2_projection(lenet: fb.models.TorchClassifier, digits_train: tuple[torch.Tensor, torch.Tensor]) -> None:
    uap = UniversalPerturbation(eps=3.0, norm="2", method="sgd", max_passes=2, seed=0).fit(lenet, digits_train[0][:64])
    assert float(uap.perturbation.norm()) <= 3.0 + 1e-4


def test_transfer_matrix(
    lenet: fb.models.TorchClassifier,
    mlp_mnist: fb.models.TorchClassifier,
    digits_train: tuple[torch.Tensor, torch.Tensor],
    digits_test: tuple[torch.Tensor, torch.Tensor],
) -> None:
    models = {"lenet": lenet, "mlp": mlp_mnist}
    uaps = {
        n: UniversalPerturbation(eps=0.3, method="sgd", max_passes=4, batch_size=32, seed=0)
        .fit(m, digits_train[0][:200])
        .perturbation
        for n, m in models.items()
    }
    names, rates = transfer_matrix(models, uaps, digits_test[0][:300])
    assert names == ["lenet", "mlp"] and rates.shape == (2, 2)
    assert float(rates[0, 0]) == pytest.approx(fooling_rate(lenet, digits_test[0][:300], uaps["lenet"]))
    with pytest.raises(InvalidArgumentError, match="missing"):
        transfer_matrix(models, {"lenet": uaps["lenet"]}, digits_test[0][:10])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"eps": -1}, "eps"),
        ({"eps": 0.1, "norm": "1"}, "norm must be one of"),
        ({"eps": 0.1, "method": "adam"}, "method must be one of"),
        ({"eps": 0.1, "delta": 2}, "delta"),
        ({"eps": 0.1, "max_passes": 0}, "max_passes"),
    ],
)
def test_bad_arguments(kw: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        UniversalPerturbation(**kw)  # type: ignore[arg-type]


def test_bad_perturbation(lenet: fb.models.TorchClassifier) -> None:
    with pytest.raises(InvalidArgumentError, match=r"perturbation must have shape \(1, 28, 28\)"):
        fooling_rate(lenet, torch.rand(2, 1, 28, 28), torch.zeros(3, 28, 28))


def test_default_is_the_sgd_method() -> None:
    uap = UniversalPerturbation(eps=0.3)
    assert (uap.method, uap.max_passes, uap.batch_size) == ("sgd", 20, 32)


def test_fooling_rate_over_a_dataloader(lenet: fb.models.TorchClassifier) -> None:
    x, y = fb.models.mnist_digits("test", limit=40)
    v = torch.full((1, 28, 28), 0.3)
    whole = fooling_rate(lenet, x, v)
    pairs = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    bare = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=7)
    assert fooling_rate(lenet, pairs, v) == pytest.approx(whole)
    assert fooling_rate(lenet, bare, v, progress=False) == pytest.approx(whole)
    assert fooling_rate(lenet, (x[i : i + 9] for i in range(0, 40, 9)), v) == pytest.approx(whole)
    with pytest.raises(fb.errors.InvalidTypeError, match="images must be an iterable"):
        fooling_rate(lenet, 3, v)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="images batch 1 must lie inside"):
        fooling_rate(lenet, [x[:2], x[2:4] + 2], v)
    with pytest.raises(InvalidArgumentError, match="at least one batch"):
        fooling_rate(lenet, [], v)


def test_model_output_problem_is_named() -> None:
    class Nan(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = fb.models.lenet_mnist().module

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.net(t)
            bad = ((t > 0.0005) & (t < 0.003)).flatten(1).any(1)  # never on clean digits
            return torch.where(bad[:, None], torch.nan, out)

    clf = fb.models.TorchClassifier(Nan().eval(), input_shape=(1, 28, 28), num_classes=10)
    x, _ = fb.models.mnist_digits("train", limit=16)
    for method in ("sgd", "deepfool"):
        uap = UniversalPerturbation(eps=0.3, method=method, max_passes=1, step_size=0.0015)
        with pytest.raises(fb.errors.ModelOutputError, match="the model returned NaN or infinite logits"):
            uap.fit(clf, x)


def test_result_repr_and_save(lenet: fb.models.TorchClassifier, tmp_path: object) -> None:
    import json
    from pathlib import Path

    x, _ = fb.models.mnist_digits("train", limit=32)
    res = UniversalPerturbation(eps=0.2, max_passes=1).fit(lenet, x, progress=False)
    assert "tensor" not in repr(res) and len(repr(res)) < 200 and "fooling_rate=" in repr(res)
    paths = res.save(Path(str(tmp_path)), prefix="u_")
    assert sorted(p.name for p in paths.values()) == [
        "u_perturbation.png",
        "u_perturbation.pt",
        "u_report.md",
        "u_summary.json",
    ]
    summary = json.loads(paths["json"].read_text())
    assert summary["fooling_rate"] == res.fooling_rate and summary["linf"] <= 0.2 + 1e-6
    assert "UniversalPerturbation(eps=0.2" in summary["settings"]
    assert torch.equal(fb._io.load_torch(paths["tensors"])["perturbation"], res.perturbation)


def test_repr_tells_nearby_settings_apart(
    lenet: fb.models.TorchClassifier, digits_train: tuple[torch.Tensor, torch.Tensor], tmp_path: Path
) -> None:
    """The repr wrote eps, delta, step_size and overshoot with :g (six digits): eps=8/255 and eps=0.0313725
    had one repr, so AdversarialFineTuning, which keys its checkpoints on it, resumed one from the other."""
    for key, a, b in (("eps", 8 / 255, 0.0313725), ("delta", 1 / 3, 0.333333), ("overshoot", 0.1 / 3, 0.0333333)):
        assert repr(UniversalPerturbation(**{"eps": 0.1, key: a})) != repr(
            UniversalPerturbation(**{"eps": 0.1, key: b})
        )
    assert repr(UniversalPerturbation(eps=0.1, step_size=1 / 30)) != repr(
        UniversalPerturbation(eps=0.1, step_size=0.0333333)
    )
    # numbers :g writes exactly keep their text, so checkpoints keyed on them are still resumed
    assert repr(UniversalPerturbation(eps=0.3, delta=0.0)) == (
        "UniversalPerturbation(eps=0.3, norm='inf', method='sgd', delta=0, max_passes=20, batch_size=32, seed=0, "
        "step_size=0.03, deepfool_steps=10, overshoot=0.02)"
    )
    assert "eps=0.03137254901960784," in repr(UniversalPerturbation(eps=8 / 255))
    x, y = digits_train[0][:64], digits_train[1][:64]
    ckpt = tmp_path / "aft.pt"

    def tune(eps: float) -> fb.defenses.AdversarialFineTuning:
        uap = UniversalPerturbation(eps=eps, max_passes=1)
        return fb.defenses.AdversarialFineTuning(lenet, x, y, x, y, uap=uap, fit_images=16, rounds=1, epochs=1)

    tune(8 / 255).run(checkpoint=ckpt, progress=False)
    with pytest.raises(fb.errors.CheckpointError, match="another configuration"):
        tune(0.0313725).run(checkpoint=ckpt, progress=False)
    # a checkpoint written before the exact text (six digits alone) still resumes with its own settings
    from foolbench import _checkpoint

    state = _checkpoint.load(ckpt)
    old = {k: v for k, v in state["config"].items() if k not in ("uap_exact", "scoring")}
    assert old["uap"].startswith("UniversalPerturbation(eps=0.0313725,")
    _checkpoint.save(ckpt, _checkpoint.wrap(fmt=state["format"], version=state["version"], config=old,
                                            payload=state["payload"]))  # fmt: skip
    assert len(tune(8 / 255).run(checkpoint=ckpt, progress=False).rows) == 2


def test_save_keeps_the_dtype_and_settings_and_draws_eps_as_white(tmp_path: Path) -> None:
    """save wrote the perturbation as float32 only (a float64 fit did not reload exactly) without eps, norm or
    method, and its picture scaled max|v| to white where its docstring said +eps."""
    from PIL import Image

    v = torch.zeros(1, 28, 28, dtype=torch.float64)
    v[0, 0, 0], v[0, 0, 1], v[0, 0, 2] = 0.15, -0.15, 0.1 / 3  # inside the ball of 0.3: a faint picture
    res = fb.search.UAPResult(v, 0.5, (0.5,), 1, 0.1, 0.3, "inf", "sgd")
    paths = res.save(tmp_path)
    saved = fb._io.load_torch(paths["tensors"])
    assert saved["perturbation"].dtype == torch.float64 and torch.equal(saved["perturbation"], v)
    assert (saved["eps"], saved["norm"], saved["method"]) == (0.3, "inf", "sgd")
    sheet = Image.open(paths["png"]).convert("L")  # 28x28 drawn 4x: pixel (i, j) at (4j, 4i)
    shade = [sheet.getpixel((4 * j, 0)) for j in range(4)]
    assert shade == [191, 64, 142, 128]  # 255 * (v / eps + 1) / 2: +eps white, -eps black, 0 gray
    # a rounding past eps stays white (not the whole picture rescaled to its own range)
    over = fb.search.UAPResult(v.clone().fill_(0.3 + 1e-9), 0.5, (0.5,), 1, 0.1, 0.3, "inf", "sgd")
    assert Image.open(over.save(tmp_path / "2")["png"]).convert("L").getpixel((0, 0)) == 255
    l2 = fb.search.UAPResult(v, 0.5, (0.5,), 1, 0.1, 3.0, "2", "sgd")  # L2: its pixels lie far inside +-eps
    shade = [Image.open(l2.save(tmp_path / "3")["png"]).convert("L").getpixel((4 * j, 0)) for j in range(4)]
    assert shade == [255, 0, 156, 128]  # 255 * (v / max|v| + 1) / 2


def test_deepfool_settings_and_seed_are_checked_under_their_own_names() -> None:
    """deepfool_steps=0 was refused as "steps must be", and seed="abc" was accepted until fit."""
    with pytest.raises(InvalidArgumentError, match="deepfool_steps must be an int >= 1, got 0"):
        UniversalPerturbation(eps=0.3, deepfool_steps=0)
    with pytest.raises(InvalidArgumentError, match="overshoot must be"):
        UniversalPerturbation(eps=0.3, overshoot=-1.0)
    for bad in ("abc", 1.5, True):
        with pytest.raises(fb.errors.InvalidTypeError, match="seed must be"):
            UniversalPerturbation(eps=0.3, seed=bad)  # type: ignore[arg-type]
    for bad in (-1, 2**64):
        with pytest.raises(InvalidArgumentError, match="seed must be"):
            UniversalPerturbation(eps=0.3, seed=bad)
    assert UniversalPerturbation(eps=0.3, seed=None).seed is None


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
@pytest.mark.parametrize("method", ["sgd", "deepfool"])
def test_fit_runs_under_no_grad_and_inference_mode(
    lenet: fb.models.TorchClassifier, digits_train: tuple[torch.Tensor, torch.Tensor], method: str, context: object
) -> None:
    """Under torch.no_grad() the fit failed: "element 0 of tensors does not require grad"."""
    uap = UniversalPerturbation(eps=0.3, method=method, max_passes=1, batch_size=16, seed=0, deepfool_steps=2)
    fit = digits_train[0][:32]
    expected = uap.fit(lenet, fit).perturbation
    with context():  # type: ignore[operator]
        got = uap.fit(lenet, fit.clone()).perturbation
    assert torch.equal(got, expected)
