from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench._filters import gaussian_blur
from foolbench.errors import InvalidArgumentError
from foolbench.search import GradientAscent


def test_all_digits_from_noise(lenet: fb.models.TorchClassifier) -> None:
    res = GradientAscent(lenet, steps=300, seed=0).run()
    assert bool(res.fooled(0.9999).all()), res.confidence
    probs = lenet.probs(res.images)
    assert bool((probs[torch.arange(10), res.classes] >= 0.9999).all())
    assert float(res.images.min()) >= 0 and float(res.images.max()) <= 1


def test_regularised_images_are_smoother(lenet: fb.models.TorchClassifier) -> None:
    plain = GradientAscent(lenet, steps=200, seed=0).run(classes=[3, 5], target_confidence=0.99)
    reg = GradientAscent(lenet, steps=200, seed=0, l2_decay=0.02, blur_every=2, blur_sigma=0.7, jitter=1).run(
        classes=[3, 5], target_confidence=0.99
    )

    def roughness(x: torch.Tensor) -> float:
        return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean())

    assert roughness(reg.images) < roughness(plain.images)
    assert bool(reg.fooled(0.99).all())


def test_visualize_unit(lenet: fb.models.TorchClassifier) -> None:
    vis = GradientAscent(lenet, steps=30, seed=0).visualize("conv2", [0, 5])
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    captured = {}
    h = lenet.module.conv2.register_forward_hook(lambda m, i, o: captured.__setitem__("o", o))
    lenet(x)
    h.remove()
    random_act = captured["o"][:, [0, 5]].flatten(2).mean(2).diagonal()
    assert bool((vis.activation > random_act).all())
    with pytest.raises(InvalidArgumentError, match="layer must name a submodule"):
        GradientAscent(lenet, steps=2).visualize("conv9", 0)
    with pytest.raises(InvalidArgumentError, match="channels must be in"):
        GradientAscent(lenet, steps=2).visualize("conv2", 99)
    for bad in ([], [0.5], True, "0"):
        with pytest.raises(InvalidArgumentError, match="channels must be a channel index or a non-empty list"):
            GradientAscent(lenet, steps=2).visualize("conv2", bad)  # type: ignore[arg-type]


def test_jittered_ascent_stops_only_once_the_returned_images_reach_the_target(
    lenet: fb.models.TorchClassifier,
) -> None:
    res = GradientAscent(lenet, steps=300, jitter=4, seed=0).run(classes=list(range(10)), target_confidence=0.99)
    assert res.history.confidence.shape[0] < 300  # it stopped on the target, not on the step budget
    assert bool((res.confidence >= 0.99).all()), res.confidence


@pytest.mark.parametrize("side", [3, 28])
def test_blur_wider_than_the_image_keeps_a_constant_image(side: int) -> None:
    x = torch.full((1, 2, side, side), 0.5)
    torch.testing.assert_close(gaussian_blur(x, 20.0), x)  # the cut kernel still sums to 1


def test_blur_keeps_shape_and_mean() -> None:
    x = torch.rand(2, 3, 9, 9, dtype=torch.float64)
    y = gaussian_blur(x, 1.0)
    assert y.shape == x.shape and y.dtype == torch.float64
    assert float(y.std()) < float(x.std())


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"lr": 0}, "lr"),
        ({"l2_decay": 1.0}, "l2_decay"),
        ({"start": "ones"}, "start must be one of"),
        ({"start": torch.rand(2, 1, 14, 14)}, "start must have shape"),
    ],
)
def test_bad_arguments(lenet: fb.models.TorchClassifier, kw: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        GradientAscent(lenet, **kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="classes must hold"):
        GradientAscent(lenet, steps=1).run(classes=[12])


@pytest.mark.parametrize(
    ("mode", "match"), [("nan", "NaN or infinite logits during gradient ascent"), ("int", "floating logits")]
)
def test_model_output_problems_are_named(mode: str, match: str) -> None:
    class Odd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = fb.models.lenet_mnist().module

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.net(t)
            return out.round().long() if mode == "int" else torch.where(t.mean() > 2, out, torch.nan)

    clf = fb.models.TorchClassifier(Odd().eval(), input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(fb.errors.ModelOutputError, match=match):
        GradientAscent(clf, steps=3).run(classes=[0, 1])


def test_progress_bar_only_when_asked(lenet: fb.models.TorchClassifier, capsys: pytest.CaptureFixture[str]) -> None:
    GradientAscent(lenet, steps=2).run(classes=[0])
    assert capsys.readouterr().err == ""
    GradientAscent(lenet, steps=2).run(classes=[0], progress=True)
    assert "gradient ascent" in capsys.readouterr().err


def test_ascent_reports_the_float32_models_confidence(lenet: fb.models.TorchClassifier) -> None:
    """With a bf16 classifier the result's confidences were the bf16 model's, where searches report the
    float32 reference's (a reported 99.99% must mean the same at every precision)."""
    fast = lenet.replace(precision="bf16")
    res = GradientAscent(fast, steps=8, seed=0).run(classes=[0, 3, 7], target_confidence=None)
    rows = torch.arange(3)
    truth = lenet.probs(res.images).double()[rows, res.classes]
    torch.testing.assert_close(res.confidence.double(), truth, rtol=0, atol=1e-6)
    assert float((fast.probs(res.images).double()[rows, res.classes] - truth).abs().max()) > 1e-6  # could differ


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's inductor imports torch.jit.script_method
@pytest.mark.parametrize("setting", [{"fold_batchnorm": True}, {"compile": True}])
def test_visualize_reports_the_activation_of_its_images(setting: dict[str, bool]) -> None:
    """With a folded or compiled classifier the last pass ran a copy without the hook: the activation
    returned was a step stale, or the fold's random check batch's."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3)
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    net.eval()
    plain = fb.models.TorchClassifier(net, input_shape=(1, 8, 8), num_classes=3)
    clf = plain.replace(**setting)
    clf.probs(torch.rand(2, 1, 8, 8))  # the folded / frozen copy exists before the call
    vis = GradientAscent(clf, steps=6, seed=0).visualize("1", [0, 2])
    seen: dict[str, torch.Tensor] = {}
    handle = net[1].register_forward_hook(lambda m, i, o: seen.__setitem__("out", o))
    try:
        plain.probs(vis.images)
    finally:
        handle.remove()
    want = torch.stack([seen["out"][0, 0].mean(), seen["out"][1, 2].mean()])
    torch.testing.assert_close(vis.activation.float(), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_ascent_and_visualize_run_under_no_grad_and_inference_mode(
    lenet: fb.models.TorchClassifier, context: object
) -> None:
    """Under torch.no_grad() both failed: "element 0 of tensors does not require grad"."""
    ascent = GradientAscent(lenet, steps=5, seed=0)
    expected, vis = ascent.run(classes=[0, 1]), ascent.visualize("conv2", [0, 5])
    with context():  # type: ignore[operator]
        res, inside = ascent.run(classes=[0, 1]), ascent.visualize("conv2", [0, 5])
    assert torch.equal(res.images, expected.images) and torch.equal(inside.images, vis.images)


@pytest.mark.parametrize(
    ("kw", "target"),
    [({"steps": 17}, 0.9999), ({"steps": 300, "jitter": 4}, 0.99), ({"steps": 6, "jitter": 2}, None)],
    ids=["plain", "jitter", "no-target"],
)
def test_history_ends_on_the_returned_images_and_found_at_is_per_image(
    lenet: fb.models.TorchClassifier, kw: dict[str, int], target: float | None
) -> None:
    """The history held each step's score before its update (with jitter the shifted image's), never the returned
    images', at evaluations that skipped the unshifted passes: steps=17 gave fooled [F, F, T] but evaluations_to
    [None] * 3. found_at was the total count for every class."""
    res = GradientAscent(lenet, seed=0, **kw).run(classes=[0, 1, 2], target_confidence=target)
    hist = res.history
    assert torch.equal(hist.confidence[-1], res.confidence)  # the last row is the result's
    assert int(hist.evaluations[-1]) == res.evaluations
    assert bool((hist.evaluations.diff() > 0).all()) and int(hist.evaluations[0]) > 0
    level = 0.9999 if target is None else target
    reached = res.evaluations_to(level)
    assert [r is not None for r in reached] == res.fooled(level).tolist()
    for k, at in enumerate(res.found_at.tolist()):
        # an image that reached the target stopped changing there; the others changed until the end
        assert at == (reached[k] if target is not None and reached[k] is not None else res.evaluations)
    if target is None:  # a row for the noise, one after each step, the last for the result
        assert len(hist) == kw["steps"] + 1


def test_found_at_tells_the_classes_apart(lenet: fb.models.TorchClassifier) -> None:
    res = GradientAscent(lenet, steps=100, seed=0).run(classes=[0, 1, 2])
    assert bool(res.fooled(0.9999).all())
    assert res.found_at.tolist() == res.evaluations_to(0.9999)
    assert int(res.found_at.min()) < res.evaluations  # a class that got there first stopped there
