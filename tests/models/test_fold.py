"""Folding BatchNorms into convolutions, and the frozen compiled graph, in TorchClassifier."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

import foolbench as fb
from foolbench.errors import InvalidTypeError
from foolbench.models._fold import fold_batchnorm


def _trained_bn(bn: nn.modules.batchnorm._BatchNorm, seed: int) -> None:
    """Give a BatchNorm statistics and an affine map far from the identity (as training would)."""
    g = torch.Generator().manual_seed(seed)
    n = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(n, generator=g))  # type: ignore[union-attr]
        bn.running_var.copy_(torch.rand(n, generator=g) * 3 + 0.2)  # type: ignore[union-attr]
        if bn.affine:
            bn.weight.copy_(torch.randn(n, generator=g))
            bn.bias.copy_(torch.randn(n, generator=g))


class Net(nn.Module):
    """conv -> BN pairs of several kinds: with and without conv bias, depthwise, affine-free BN, 1-D."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, groups=8, padding=1)
        self.bn2 = nn.BatchNorm2d(8, affine=False)
        self.conv3 = nn.Conv1d(8, 6, 3)
        self.bn3 = nn.BatchNorm1d(6)
        self.fc = nn.Linear(6, 5)
        for i, bn in enumerate((self.bn1, self.bn2, self.bn3)):
            _trained_bn(bn, i)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.dw(x)))
        x = x.mean(dim=2)  # (B, 8, W)
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean(dim=2))


class Residual(nn.Module):
    """A convolution whose output also feeds a skip connection: folding would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 4)
        _trained_bn(self.bn, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.fc((self.bn(y) + y).mean(dim=(2, 3)))


class Shared(nn.Module):
    """One BatchNorm after two convolutions (and one convolution run twice): neither may be folded."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        _trained_bn(self.bn, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((self.bn(self.a(x)) + self.bn(self.b(x)) + self.a(x)).mean(dim=(2, 3)))


def _clf(net: nn.Module, **kw: object) -> fb.models.TorchClassifier:
    torch.manual_seed(0)
    classes = net.fc.out_features
    return fb.models.TorchClassifier(net.eval(), input_shape=(3, 12, 12), num_classes=classes, **kw)  # type: ignore[arg-type]


def _x(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 3, 12, 12, generator=torch.Generator().manual_seed(5))


def test_fold_matches_the_module_and_leaves_it_alone() -> None:
    torch.manual_seed(0)
    net = Net().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded, report = fold_batchnorm(net, _x())
    assert report.ok and report.batchnorms == 3
    assert sorted(report.folded) == [("conv1", "bn1"), ("conv3", "bn3"), ("dw", "bn2")]
    assert all(isinstance(getattr(folded, n), nn.Identity) for n in ("bn1", "bn2", "bn3"))
    assert isinstance(net.bn1, nn.BatchNorm2d)  # the original keeps its layers and weights
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    x = torch.rand(9, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)


def test_fold_refuses_what_it_cannot_prove() -> None:
    torch.manual_seed(0)
    residual = Residual().eval()
    same, report = fold_batchnorm(residual, _x())
    assert same is residual and not report.ok and report.max_abs_diff > 1e-2  # the skip would have changed
    torch.manual_seed(0)
    shared = Shared().eval()
    same, report = fold_batchnorm(shared, _x())
    assert same is shared and report.ok and report.folded == [] and report.batchnorms == 1
    batch_stats = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    same, report = fold_batchnorm(batch_stats, _x())  # normalised by each batch's statistics: not foldable
    assert same is batch_stats and report.ok and report.folded == []


def test_adapter_folds_no_grad_calls_only() -> None:
    torch.manual_seed(0)
    plain = _clf(Net())
    fast = plain.replace(fold_batchnorm=True)
    assert "folded" not in fast._cache and "fold_batchnorm=True" in repr(fast)
    x = _x(20)
    torch.testing.assert_close(fast.log_probs(x), plain.log_probs(x), atol=1e-5, rtol=0)
    copy = fast._cache["folded"][1]
    assert copy is not fast.module and isinstance(copy.bn1, nn.Identity) and isinstance(fast.module.bn1, nn.BatchNorm2d)
    # with gradients the module itself runs: the same gradient, bit for bit, and its weights get theirs
    xg = x[:3].clone().requires_grad_(True)
    fast(xg)[:, 1].sum().backward()
    xp = x[:3].clone().requires_grad_(True)
    plain(xp)[:, 1].sum().backward()
    assert xg.grad is not None and xp.grad is not None and torch.equal(xg.grad, xp.grad)
    assert fast.module.conv1.weight.grad is not None
    ref = fast.reference()
    assert ref is not fast and not ref.fold_batchnorm and ref.module is fast.module
    assert torch.equal(ref.log_probs(x), plain.log_probs(x))


def test_adapter_refolds_when_a_weight_changes() -> None:
    torch.manual_seed(0)
    fast = _clf(Net(), fold_batchnorm=True)
    x = _x()
    first = fast.log_probs(x)
    fast.log_probs(x)
    built = fast._cache["folded"][1]
    assert fast._cache["folded"][1] is built  # reused while the weights stay
    with torch.no_grad():
        fast.module.conv3.weight.mul_(-2.0)  # in-place changes (an optimiser step)
        fast.module.bn3.running_var.add_(1.0)
    again = fast.log_probs(x)
    assert fast._cache["folded"][1] is not built
    torch.testing.assert_close(again, fast.reference().log_probs(x), atol=1e-5, rtol=0)
    assert float((again - first).abs().max()) > 1e-2


def test_adapter_refolds_after_writes_through_data_and_on_refresh() -> None:
    """Writes through ``.data`` (``vector_to_parameters`` does ``p.data = ...``) changed neither a tensor's id nor
    its version counter, so the folded copy kept scoring with the old weights; a reassignment is now seen, and
    ``refresh()`` on any adapter of the module signals an in-place edit through ``.data``."""
    torch.manual_seed(0)
    fast = _clf(Net(), fold_batchnorm=True)
    twin = fast.replace(batch_size=5)  # shares the module, folds its own copy
    ref = fast.reference()
    x = _x()
    before = fast.log_probs(x)
    twin.log_probs(x)
    params = list(fast.module.parameters())
    vector_to_parameters(parameters_to_vector(params) * -2.0, params)
    for clf in (fast, twin):
        torch.testing.assert_close(clf.log_probs(x), ref.log_probs(x), atol=1e-5, rtol=0)
    assert float((ref.log_probs(x) - before).abs().max()) > 1e-2
    with torch.no_grad():
        fast.module.conv3.weight.data.mul_(3.0)  # in place through .data: no tensor, version or address changes
    fast.refresh()
    assert fast._cache["folded"][1] is None  # its own copy freed at once
    for clf in (fast, twin):  # the twin's copy is rebuilt too
        torch.testing.assert_close(clf.log_probs(x), ref.log_probs(x), atol=1e-5, rtol=0)
    assert twin.refresh() is None and fast.reference().refresh() is None  # no copy there: harmless


def test_adapter_warns_once_and_stays_exact_when_nothing_folds() -> None:
    torch.manual_seed(0)
    residual = _clf(Residual(), fold_batchnorm=True)
    x = _x()
    with pytest.warns(RuntimeWarning, match="fold_batchnorm=True: the folded module's logits differ"):
        out = residual.log_probs(x)
    assert torch.equal(out, residual.reference().log_probs(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        residual.log_probs(x)  # no second warning
    linear = fb.models.TorchClassifier(
        nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 4)).eval(), input_shape=(3, 12, 12), num_classes=4,
        fold_batchnorm=True,
    )  # fmt: skip
    with pytest.warns(RuntimeWarning, match=r"no BatchNorm of the module \(it has 0\)"):
        linear.probs(x)
    with pytest.raises(InvalidTypeError, match="fold_batchnorm must be True or False, got str 'yes'"):
        _clf(Net(), fold_batchnorm="yes")


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))],
)
def test_fold_keeps_channels_last_on_every_device(device: str) -> None:
    torch.manual_seed(0)
    fast = _clf(Net(), fold_batchnorm=True, channels_last=True, device=device)
    x = _x().to(device)
    torch.testing.assert_close(fast.log_probs(x), fast.reference().log_probs(x), atol=1e-5, rtol=0)
    assert fast._cache["folded"][1].conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_efficientnet_lite0_folds_every_batchnorm() -> None:
    clf = fb.models.efficientnet_lite0(image_size=96).replace(fold_batchnorm=True)
    x, y = fb.models.imagenet_photos(96)
    lp = clf.log_probs(x)
    folded = clf._cache["folded"][1]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())  # all 49 folded
    assert lp.argmax(1).tolist() == y.tolist()
    torch.testing.assert_close(lp, clf.reference().log_probs(x), atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's inductor imports torch.jit.script_method
def test_compile_freezes_no_grad_calls_and_recompiles_after_a_weight_change() -> None:
    torch.manual_seed(0)
    fast = _clf(Net(), compile=True)
    x = _x()
    out = fast.log_probs(x)
    assert fast._cache["frozen"][1] is not None and "compile_failed" not in fast._cache
    torch.testing.assert_close(out, fast.reference().log_probs(x), atol=1e-5, rtol=0)
    with torch.no_grad():
        fast.module.conv3.weight.mul_(-2.0)  # a frozen graph would not see this
    torch.testing.assert_close(fast.log_probs(x), fast.reference().log_probs(x), atol=1e-5, rtol=0)
    xg = x[:2].clone().requires_grad_(True)
    fast(xg)[:, 0].sum().backward()  # with gradients: the plain compiled module
    xp = x[:2].clone().requires_grad_(True)
    fast.reference()(xp)[:, 0].sum().backward()
    assert xg.grad is not None and xp.grad is not None
    torch.testing.assert_close(xg.grad, xp.grad, atol=1e-5, rtol=1e-4)


def test_pickled_and_copied_without_the_cache() -> None:
    import copy
    import pickle

    torch.manual_seed(0)
    fast = _clf(Net(), fold_batchnorm=True)
    x = _x()
    want = fast.log_probs(x)
    assert "folded" in fast._cache
    for twin in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
        assert twin._cache == {} and twin.fold_batchnorm
        assert torch.equal(twin.log_probs(x), want)  # the same fold, rebuilt on first use
    assert "folded" in fast._cache  # the original keeps its own


def test_weights_replaced_twice_between_calls_are_seen_though_memory_is_reused() -> None:
    """The version key includes each tensor's address; weights set twice between two calls could land where the
    freed old weights were and look unchanged (11 logits off in the reviewer's run). The cache keeps the old
    weights alive, so a new tensor never takes their address."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    clf = fb.models.TorchClassifier(net, input_shape=(1, 8, 8), num_classes=3, fold_batchnorm=True)
    x = torch.rand(4, 1, 8, 8)
    v = parameters_to_vector(net.parameters())
    vector_to_parameters(v.clone(), net.parameters())  # the weights live in one vector
    clf.log_probs(x)
    worst = 0.0
    for _ in range(6):
        vector_to_parameters(v + 0.3 * torch.randn_like(v), net.parameters())  # the first vector freed
        vector_to_parameters(v + 0.3 * torch.randn_like(v), net.parameters())  # can take its address
        worst = max(worst, float((clf.log_probs(x) - clf.reference().log_probs(x)).abs().max()))
    assert worst < 1e-4
