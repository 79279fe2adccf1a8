from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench.errors import FoolbenchError, InvalidArgumentError, InvalidTypeError, ModelOutputError


def linear(k: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, k)).eval()


def make(**kw: object) -> fb.models.TorchClassifier:
    args: dict[str, object] = {"input_shape": (1, 28, 28), "num_classes": 10}
    args.update(kw)
    return fb.models.TorchClassifier(linear(), **args)  # type: ignore[arg-type]


def test_is_a_classifier_and_shapes() -> None:
    clf = make()
    assert isinstance(clf, fb.models.Classifier)
    x = torch.rand(7, 1, 28, 28)
    assert clf(x).shape == (7, 10)
    p = clf.probs(x)
    assert p.shape == (7, 10)
    torch.testing.assert_close(p.sum(1), torch.ones(7))
    assert clf.predict(x).shape == (7,)


def test_logits_are_differentiable() -> None:
    clf = make()
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    clf(x)[:, 2].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_probs_have_no_grad_and_match_call() -> None:
    clf = make()
    x = torch.rand(5, 1, 28, 28, requires_grad=True)
    p = clf.probs(x)
    assert not p.requires_grad
    torch.testing.assert_close(p, torch.softmax(clf(x), 1).detach())


def test_chunks_and_opt_in_counting() -> None:
    calls: list[int] = []
    net = linear()
    clf = fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10, batch_size=16)
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    counted = fb.models.CountingClassifier(clf)
    counted.probs(torch.rand(50, 1, 28, 28))
    assert calls == [16, 16, 16, 2]
    counted(torch.rand(3, 1, 28, 28, requires_grad=True)).sum().backward()  # gradient calls count too
    assert counted.evaluations == 53
    assert counted.reset() == 53 and counted.evaluations == 0
    assert not hasattr(clf, "evaluations")  # the plain adapter does not count
    assert counted.device == clf.device and counted.class_names == clf.class_names
    assert counted.layers().keys() == clf.layers().keys() == {"0", "1"}


def test_preprocessing_inside_adapter() -> None:
    net = linear()
    clf = make(mean=[0.5], std=[0.25])
    clf.module.load_state_dict(net.state_dict())
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(clf.probs(x), torch.softmax(net((x - 0.5) / 0.25), 1))


def test_resize_inside_adapter() -> None:
    clf = fb.models.TorchClassifier(linear(), input_shape=(1, 14, 14), num_classes=10, resize=(28, 28))
    assert clf.probs(torch.rand(2, 1, 14, 14)).shape == (2, 10)


def test_training_flag_restored_and_warned() -> None:
    net = linear().train()
    with pytest.warns(UserWarning, match="training mode"):
        clf = fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10)
    seen: list[bool] = []
    net[1].register_forward_hook(lambda m, i, o: seen.append(m.training))
    clf.probs(torch.rand(2, 1, 28, 28))
    assert seen == [False]
    assert net.training and net[1].training


def test_eval_module_stays_eval() -> None:
    clf = make()
    clf.probs(torch.rand(2, 1, 28, 28))
    assert not clf.module.training


def test_device_and_dtype_follow_module() -> None:
    net = linear().double()
    clf = fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10)
    assert clf.device == torch.device("cpu") and clf.dtype == torch.float64
    assert clf(torch.rand(2, 1, 28, 28)).dtype == torch.float64


def test_repr_shows_settings() -> None:
    r = repr(make(mean=0.1, std=0.3, bounds=(0, 1)))
    assert "input_shape=(1, 28, 28)" in r and "num_classes=10" in r and "mean=" in r


@pytest.mark.parametrize(
    ("x", "err", "match"),
    [
        (torch.rand(28, 28), InvalidArgumentError, r"x must have shape \(B, 1, 28, 28\)"),
        (torch.rand(2, 3, 28, 28), InvalidArgumentError, r"\(B, 1, 28, 28\), got \(2, 3, 28, 28\)"),
        (torch.rand(2, 1, 32, 32), InvalidArgumentError, r"got \(2, 1, 32, 32\)"),
        (torch.randint(0, 255, (2, 1, 28, 28)), InvalidTypeError, "floating dtype"),
        (torch.full((2, 1, 28, 28), 2.0), InvalidArgumentError, r"bounds \[0, 1\], got values in \[2, 2\]"),
        (torch.full((2, 1, 28, 28), float("nan")), InvalidArgumentError, "NaN or inf"),
        (torch.full((2, 1, 28, 28), float("inf")), InvalidArgumentError, "NaN or inf"),
        (torch.rand(0, 1, 28, 28), InvalidArgumentError, "empty batch"),
        ([[0.0]], InvalidTypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs(x: object, err: type[Exception], match: str) -> None:
    clf = make()
    with pytest.raises(err, match=match):
        clf.probs(x)  # type: ignore[arg-type]


def test_wrong_number_of_classes_found_at_wrap_time() -> None:
    with pytest.raises(ModelOutputError, match=r"\(1, 10\) for one input of input_shape=\(1, 28, 28\), got \(1, 784\)"):
        fb.models.TorchClassifier(torch.nn.Flatten().eval(), input_shape=(1, 28, 28), num_classes=10)


def test_wrong_input_shape_found_at_wrap_time() -> None:
    with pytest.raises(InvalidArgumentError, match=r"input_shape=\(1, 32, 32\) does not fit the module.*RuntimeError"):
        fb.models.TorchClassifier(linear(), input_shape=(1, 32, 32), num_classes=10)
    with pytest.raises(InvalidArgumentError, match=r"input_shape=\(3, 28, 28\) does not fit the module"):
        fb.models.lenet_mnist().replace(input_shape=(3, 28, 28))


def test_wrap_time_check_is_one_no_grad_eval_forward() -> None:
    seen: list[tuple[int, bool, bool]] = []
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(784, 10)).train()
    net[2].register_forward_hook(lambda m, i, o: seen.append((i[0].shape[0], m.training, torch.is_grad_enabled())))
    with pytest.warns(UserWarning, match="training mode"):
        fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10)
    assert seen == [(1, False, False)]
    assert all(m.training for m in net.modules())  # flags restored


def test_nan_output() -> None:
    class Nan(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 10), float("nan"))

    clf = fb.models.TorchClassifier(Nan().eval(), input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(ModelOutputError, match="NaN"):
        clf.probs(torch.rand(2, 1, 28, 28))


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"mean": [0.1, 0.2]}, InvalidArgumentError, "mean must have 1 or 1 values"),
        ({"std": [0.0]}, InvalidArgumentError, "std must be positive"),
        ({"batch_size": 0}, InvalidArgumentError, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": 2.5}, InvalidTypeError, "batch_size must be an int"),
        ({"bounds": (1, 0)}, InvalidArgumentError, "lower < upper"),
        ({"input_shape": (28, 28)}, InvalidArgumentError, "input_shape must be a"),
        ({"num_classes": 1}, InvalidArgumentError, "num_classes must be an int >= 2"),
        ({"class_names": ["a"]}, InvalidArgumentError, "class_names must hold num_classes=10"),
    ],
)
def test_bad_constructor_arguments(kw: dict[str, object], err: type[Exception], match: str) -> None:
    with pytest.raises(err, match=match):
        make(**kw)


def test_module_type_checked() -> None:
    with pytest.raises(InvalidTypeError, match="module must be a torch.nn.Module"):
        fb.models.TorchClassifier(lambda x: x, input_shape=(1, 28, 28), num_classes=10)  # type: ignore[arg-type]


class Tiny:
    """Follows only the tiny protocol: input_shape, num_classes, bounds, __call__."""

    input_shape = (1, 4, 4)
    num_classes = 3
    bounds = (0.0, 2.0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :3] * 5


def test_check_classifier_passes_base_classifiers_through(lenet: fb.models.TorchClassifier) -> None:
    assert fb.models.check_classifier(lenet) is lenet
    smooth = fb.defenses.MedianSmoothing(lenet, 3)
    assert fb.models.check_classifier(smooth) is smooth


def test_check_classifier_wraps_the_tiny_protocol_with_defaults() -> None:
    clf = fb.models.check_classifier(Tiny())
    assert isinstance(clf, fb.models.BaseClassifier) and isinstance(Tiny(), fb.models.Classifier)
    assert clf.device == torch.device("cpu") and clf.dtype == torch.float32
    assert clf.class_names == ["0", "1", "2"] and clf.batch_size == 256 and clf.reference() is clf
    x = torch.rand(5, 1, 4, 4, requires_grad=True) * 2
    torch.testing.assert_close(clf.log_probs(x), torch.log_softmax(x.detach().flatten(1)[:, :3] * 5, 1))
    assert clf(x).requires_grad  # differentiable through the adapter
    with pytest.raises(InvalidArgumentError, match=r"bounds \[0, 2\]"):
        clf.probs(torch.full((1, 1, 4, 4), 3.0))
    # the search and attack layers accept it
    res = fb.search.PGD(eps=0.5, steps=3)(Tiny(), torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0]))
    assert res.adversarial.shape == (4, 1, 4, 4)


def test_check_classifier_uses_declared_optional_members() -> None:
    class Named(Tiny):
        class_names = ("a", "b", "c")
        batch_size = 2
        device = "cpu"

    clf = fb.models.check_classifier(Named())
    assert clf.class_names == ["a", "b", "c"] and clf.batch_size == 2
    assert clf.predict(torch.rand(5, 1, 4, 4)).shape == (5,)


def test_check_classifier_names_every_missing_member() -> None:
    class Half:
        input_shape = (1, 4, 4)

    with pytest.raises(InvalidTypeError, match=r"missing 'num_classes', 'bounds', '__call__'\); .* got Half"):
        fb.models.check_classifier(Half())
    with pytest.raises(InvalidTypeError, match=r"model must follow"):
        fb.models.check_classifier(torch.nn.Linear(2, 2), "model")


def test_replace_shares_the_module_and_validates() -> None:
    clf = make(mean=0.5, std=0.25, batch_size=7, class_names=list("abcdefghij"))
    small = clf.replace(batch_size=3)
    assert small.module is clf.module and small.batch_size == 3
    assert small.class_names == clf.class_names and small.mean is not None
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(small.log_probs(x), clf.log_probs(x))
    other = clf.replace(module=linear(11), num_classes=11, class_names=[*clf.class_names, "k"])
    assert other.num_classes == 11 and other.module is not clf.module and other.std is not None
    with pytest.raises(InvalidArgumentError, match=r"replace\(\) got unknown setting\(s\) \['epsilon'\]"):
        clf.replace(epsilon=1)
    with pytest.raises(InvalidArgumentError, match="batch_size must be an int >= 1, got 0"):
        clf.replace(batch_size=0)
    with pytest.raises(ModelOutputError, match="num_classes"):
        clf.replace(num_classes=5, class_names=None)


def test_weights_digest_keys_the_weights() -> None:
    clf = make()
    d = fb.models.weights_digest(clf)
    assert d == fb.models.weights_digest(clf.module) == fb.models.weights_digest(make())
    assert len(d) == 16 and int(d, 16) >= 0
    assert fb.models.weights_digest(clf.replace(precision="bf16")) == d  # settings are not weights
    with torch.no_grad():
        clf.module[1].bias[3] += 1e-6
    assert fb.models.weights_digest(clf) != d
    half = fb.models.weights_digest(linear().to(torch.bfloat16))
    assert half not in (d, fb.models.weights_digest(linear()))  # dtype counts
    with pytest.raises(InvalidTypeError, match="model must be an nn.Module"):
        fb.models.weights_digest("lenet")  # type: ignore[arg-type]


def test_bf16_log_probs_agree_with_fp32_on_lenet(
    lenet: fb.models.TorchClassifier, digits_test: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x = digits_test[0]
    ref = lenet.log_probs(x)
    for precision, top_tol, all_tol in (("bf16", 0.05, 0.3), ("fp16", 0.01, 0.05)):
        fast = lenet.replace(precision=precision)
        lp = fast.log_probs(x)
        assert lp.dtype == torch.float32 and fast(x[:2]).dtype == torch.float32  # upcast before the softmax
        top = ref.argmax(1, keepdim=True)
        # stated tolerance: the predicted class's log-probability within top_tol, every class within all_tol
        assert float((lp - ref).gather(1, top).abs().max()) <= top_tol, precision
        assert float((lp - ref).abs().max()) <= all_tol, precision
        assert float((lp.argmax(1) == ref.argmax(1)).float().mean()) >= 0.99
        assert float((lp - ref).abs().max()) > 0  # reduced precision really ran
        assert fast.reference().precision == "fp32" and fast.reference() is fast.reference()
        torch.testing.assert_close(fast.reference().log_probs(x[:50]), ref[:50])
    assert lenet.reference() is lenet


def test_reduced_precision_on_a_tiny_model() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 14 * 14, 5)
    ).eval()
    clf = fb.models.TorchClassifier(net, input_shape=(3, 16, 16), num_classes=5)
    x = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ref = clf.log_probs(x)
    torch.testing.assert_close(clf.replace(precision="bf16").log_probs(x), ref, atol=0.01, rtol=0)
    torch.testing.assert_close(clf.replace(precision="fp16").log_probs(x), ref, atol=0.002, rtol=0)
    last = clf.replace(channels_last=True)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(last.log_probs(x), ref)
    assert "channels_last=True" in repr(last) and "precision='bf16'" in repr(clf.replace(precision="bf16"))


def test_compile_is_lazy_and_falls_back_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    clf = make(compile=True)
    assert clf.compile_module and "compiled" not in clf._cache  # nothing compiled at construction
    assert clf.reference() is not clf and not clf.reference().compile_module

    def broken(module: torch.nn.Module) -> object:
        def run(x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    x = torch.rand(3, 1, 28, 28)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*no C\\+\\+ compiler"):
        out = clf.log_probs(x)
    torch.testing.assert_close(out, make().log_probs(x))
    clf.log_probs(x)  # no second warning (pytest's filterwarnings=error would fail)


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"precision": "fp8"}, InvalidArgumentError, "precision must be one of 'fp32', 'bf16', 'fp16'; got 'fp8'"),
        ({"precision": torch.bfloat16}, InvalidArgumentError, "precision must be one of"),
        ({"channels_last": "yes"}, InvalidTypeError, "channels_last must be True or False, got str 'yes'"),
        ({"compile": 1}, InvalidTypeError, "compile must be True or False, got int 1"),
        ({"device": "tpu9"}, InvalidArgumentError, "device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got 'tpu9'"),
        ({"device": 3.5}, InvalidTypeError, "device must be a str or torch.device"),
        ({"mean": "0.5"}, InvalidTypeError, "mean must be a number"),
    ],
)
def test_bad_precision_layout_device_arguments(kw: dict[str, object], err: type[Exception], match: str) -> None:
    with pytest.raises(err, match=match):
        make(**kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_one_clear_error() -> None:
    for build in (
        lambda: make(device="cuda"),
        lambda: fb.models.lenet_mnist(device="cuda"),
        lambda: fb.models.load_model("lenet-mnist", device="cuda:0"),
    ):
        with pytest.raises(FoolbenchError, match=r"device='cuda(:0)?' needs a CUDA GPU, but this machine has none"):
            build()
    with pytest.raises(FoolbenchError, match="device must be 'cpu'"):
        fb.models.lenet_mnist(device="tpu9")


def test_layers_name_the_wrapped_network(lenet: fb.models.TorchClassifier) -> None:
    assert "conv2" in lenet.layers() and "conv2" in fb.defenses.MedianSmoothing(lenet, 3).layers()
    assert lenet.network() is lenet.module


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_replace_onto_another_device_leaves_the_original_working() -> None:
    clf = fb.models.lenet_mnist()
    x = torch.rand(4, 1, 28, 28)
    before = clf.probs(x)
    moved = clf.replace(device="cuda")
    assert moved.module is not clf.module and next(clf.module.parameters()).device.type == "cpu"
    torch.testing.assert_close(clf.probs(x), before)
    torch.testing.assert_close(moved.probs(x.cuda()).cpu(), before, rtol=1e-4, atol=1e-5)
    assert clf.replace(device="cpu").module is clf.module  # the same device: shared


def test_a_protocol_module_in_float64_is_fed_float64() -> None:
    class Proto(torch.nn.Module):
        input_shape, num_classes, bounds = (1, 4, 4), 3, (0.0, 1.0)

        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(16, 3).double()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x.flatten(1))

    proto = Proto()
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    clf = fb.models.check_classifier(proto)
    assert clf.dtype == torch.float64
    torch.testing.assert_close(clf.probs(x).double(), torch.softmax(proto(x), 1), rtol=1e-5, atol=1e-6)
    res = fb.search.PGD(eps=0.1, steps=2)(proto, x, torch.tensor([0, 1]))
    assert res.adversarial.dtype == torch.float64


def test_to_and_double_move_the_whole_adapter() -> None:
    """``.double()`` (and ``.to("cuda")``, as Ray replicas do) keep the adapter in step with its module."""
    clf = fb.models.lenet_mnist()
    x = torch.rand(3, 1, 28, 28)
    before = clf.probs(x)
    moved = clf.double()
    assert moved is clf and clf.dtype == torch.float64 and clf.mean is not None and clf.mean.dtype == torch.float64
    torch.testing.assert_close(clf.probs(x.double()).float(), before, rtol=0, atol=1e-5)
    assert clf.reference() is clf and clf.replace(batch_size=8).dtype == torch.float64
    res = fb.search.FGSM(eps=0.1)(clf, x.double(), clf.predict(x.double()))
    assert res.adversarial.dtype == torch.float64


def test_accuracy_checks_its_labels() -> None:
    clf = fb.models.lenet_mnist()
    x, y = fb.data.mnist_digits("test", limit=8)
    assert fb.defenses.accuracy(clf, x, y) > 0.5
    for bad, match in (
        (y[:, None], r"labels must have shape \(8,\)"),
        (y + 100, r"labels must be class indices in \[0, 9\]"),
        (y[:5], "labels"),
    ):
        with pytest.raises(InvalidArgumentError, match=match):
            fb.defenses.accuracy(clf, x, bad)


def test_double_on_one_adapter_moves_every_adapter_sharing_the_module() -> None:
    """``.double()`` on one adapter converted the module it shares with its ``replace()`` / ``reference()`` twins
    but updated only its own device, dtype and mean/std, so the twins then failed with a dtype mismatch."""
    clf = fb.models.lenet_mnist()
    fast = clf.replace(precision="bf16")
    ref = fast.reference()
    small = clf.replace(batch_size=2)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    before = clf.probs(x)
    clf.double()
    for twin in (ref, small, fast):
        assert twin.module is clf.module and twin.dtype == torch.float64 and twin.device == clf.device
        assert twin.mean is not None and twin.mean.dtype == torch.float64
    want = clf.probs(x)
    assert torch.equal(ref.probs(x), want) and torch.equal(small.probs(x), want)  # float64, as the module
    torch.testing.assert_close(want, before, rtol=0, atol=1e-5)
    torch.testing.assert_close(fast.log_probs(x), ref.log_probs(x), rtol=0, atol=0.3)  # still bf16 autocast
    again = small.replace(batch_size=4)  # follows the module: shared, not copied back to float32
    assert again.module is clf.module and again.dtype == torch.float64
    ref.float()  # and back, from any of them
    assert clf.dtype == fast.dtype == torch.float32 and torch.equal(clf.probs(x), before)


def test_a_protocol_module_in_training_mode_is_scored_in_eval_mode() -> None:
    """check_classifier ran an ``nn.Module`` following the protocol in whatever mode it was in: in training mode
    every score updated its BatchNorm statistics and drew new dropout masks."""

    class Proto(torch.nn.Module):
        input_shape, num_classes, bounds = (1, 4, 4), 3, (0.0, 1.0)

        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 3, 4)
            self.bn = torch.nn.BatchNorm2d(3)
            self.drop = torch.nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.drop(self.bn(self.conv(x))).flatten(1)

    torch.manual_seed(0)
    proto = Proto()
    proto.conv.eval()  # a mix of flags, kept as found
    flags = [m.training for m in proto.modules()]
    stats = proto.bn.running_mean.clone()
    clf = fb.models.check_classifier(proto)
    x = torch.rand(4, 1, 4, 4)
    seen: list[bool] = []
    proto.drop.register_forward_hook(lambda m, i, o: seen.append(m.training))
    assert torch.equal(clf.probs(x), clf.probs(x))
    clf(x.requires_grad_(True)).sum().backward()  # with gradients too
    assert seen == [False, False, False]
    assert torch.equal(proto.bn.running_mean, stats)
    assert [m.training for m in proto.modules()] == flags == [True, False, True, True]


def test_normalisation_made_under_inference_mode_still_takes_gradients() -> None:
    """mean/std are made at the first call on a device and dtype: made inside ``torch.inference_mode()``
    (after a deepcopy, a pickle or ``.to()``), they were inference tensors, and every later call with
    gradients failed ("Inference tensors cannot be saved for backward")."""
    import copy

    clf = copy.deepcopy(fb.models.lenet_mnist())
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        clf.probs(x)
    x.requires_grad_(True)
    clf(x).sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)


def test_identity_reads_trivial_normalisation_as_none() -> None:
    """mean=0 / std=1 compute as no normalisation, but their identity differed, so a checkpoint written with
    one was refused with the other."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    plain = fb.models.TorchClassifier(net, input_shape=(1, 4, 4), num_classes=3)
    same = plain.replace(mean=0.0, std=[1.0])
    assert same.identity() == plain.identity() != plain.replace(mean=0.5).identity()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_replace_on_the_same_cuda_device_shares_the_module() -> None:
    """A module's tensors are on "cuda:0" but device="cuda" has no index: replace(device="cuda") copied the
    module (twice the GPU memory), and the twins stopped following each other's .to()."""
    clf = fb.models.lenet_mnist(device="cuda")
    assert clf.replace(device="cuda").module is clf.module


def test_replace_and_reference_keep_public_settings_changed_after_construction() -> None:
    clf = fb.models.lenet_mnist()
    clf.batch_size = 8
    clf.check_inputs = False
    clf.class_names = [f"digit {i}" for i in range(10)]
    for twin in (clf.replace(precision="bf16"), clf.reference(), clf.replace(std=0.5)):
        assert (twin.batch_size, twin.check_inputs, twin.class_names) == (8, False, clf.class_names)
    assert clf.replace(batch_size=4).batch_size == 4  # a change still wins
    fast = fb.models.lenet_mnist().replace(precision="bf16")
    twin = fast.reference()
    fast.batch_size, fast.check_inputs = 8, False  # after the twin was built
    assert fast.reference() is twin and (twin.batch_size, twin.check_inputs) == (8, False)
    with pytest.raises(InvalidArgumentError, match="check_inputs must be True or False, got 'no'"):
        fb.models.TorchClassifier(clf.module, input_shape=(1, 28, 28), num_classes=10, check_inputs="no")
