"""Fold each BatchNorm that directly follows a convolution into that convolution's weights.

In evaluation mode a BatchNorm is an affine map per channel, ``y = (x - mean) / sqrt(var + eps) * gamma
+ beta``; when its input is one convolution's output, the convolution can absorb it (scaled weights, a
new bias) and the separate pass over the activations disappears. On a CPU that pass is a large share of
a small network's time (EfficientNet-Lite0: ``benchmarks/bench_models.py``).

The pairs are found by running the module once with hooks (so any module works, traceable or not): a
BatchNorm whose input *is* the output tensor of a convolution, each called once. The folded copy is
then checked against the original on a random batch, and refused (the original is kept) if they
disagree, which catches the one case hooks cannot see: a convolution's output also used elsewhere.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

__all__ = ["FoldReport", "fold_batchnorm"]


class FoldReport:
    """What :func:`fold_batchnorm` did: ``folded`` pairs of module names, and ``max_abs_diff``."""

    def __init__(self, folded: list[tuple[str, str]], batchnorms: int, max_abs_diff: float, ok: bool) -> None:
        self.folded = folded
        self.batchnorms = batchnorms
        self.max_abs_diff = max_abs_diff
        self.ok = ok

    def __repr__(self) -> str:
        return (
            f"FoldReport(folded={len(self.folded)} of {self.batchnorms} BatchNorms, "
            f"max_abs_diff={self.max_abs_diff:.2e}, ok={self.ok})"
        )


def _pairs(module: nn.Module, example: torch.Tensor) -> tuple[list[tuple[str, str]], int]:
    """(conv name, BatchNorm name) pairs where the BatchNorm's input is the conv's output; BatchNorm count."""
    names = {m: n for n, m in module.named_modules()}
    calls: dict[str, int] = {}
    outputs: dict[int, tuple[str, torch.Tensor]] = {}  # id -> (conv name, the tensor: kept alive so ids stay unique)
    fed: dict[str, str] = {}

    def on_conv(mod: nn.Module, args: Any, out: Any) -> None:
        name = names[mod]
        calls[name] = calls.get(name, 0) + 1
        if isinstance(out, torch.Tensor):
            outputs[id(out)] = (name, out)

    def on_bn(mod: nn.Module, args: Any, out: Any) -> None:
        name = names[mod]
        calls[name] = calls.get(name, 0) + 1
        x = args[0] if args else None
        if isinstance(x, torch.Tensor) and id(x) in outputs and outputs[id(x)][1] is x:
            fed[name] = outputs[id(x)][0]

    hooks = []
    batchnorms = 0
    for mod in module.modules():
        if isinstance(mod, _ConvNd) and not mod.transposed:
            hooks.append(mod.register_forward_hook(on_conv))
        elif isinstance(mod, _BatchNorm):
            batchnorms += 1
            hooks.append(mod.register_forward_hook(on_bn))
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    stats = {n for n, m in module.named_modules() if isinstance(m, _BatchNorm) and m.running_var is not None}
    # (a BatchNorm without running statistics normalises by each batch's own: nothing fixed to fold)
    pairs = [(conv, bn) for bn, conv in fed.items() if calls[bn] == 1 and calls[conv] == 1 and bn in stats]
    return pairs, batchnorms


def _absorb(conv: _ConvNd, bn: _BatchNorm) -> None:
    """Scale ``conv``'s weight and set its bias so that it computes ``bn(conv(x))`` (evaluation mode)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a BatchNorm without running statistics cannot be folded")
    w = conv.weight
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(mean)
    shape = (-1,) + (1,) * (w.dim() - 1)
    weight = torch.empty_like(w, requires_grad=False)  # the same strides (a channels-last weight stays one)
    weight.copy_(w.detach().double() * scale.reshape(shape))
    conv.weight = nn.Parameter(weight, requires_grad=False)
    conv.bias = nn.Parameter(((bias - mean) * scale + beta).to(w.dtype), requires_grad=False)


def _set(root: nn.Module, name: str, value: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, value)


def fold_batchnorm(module: nn.Module, example: torch.Tensor) -> tuple[nn.Module, FoldReport]:
    """A copy of ``module`` in evaluation mode with its conv -> BatchNorm pairs folded.

    The original is not changed. Only pairs where the BatchNorm's input is exactly the convolution's
    output tensor, and both run once per forward, are folded (shared modules are left alone); the
    BatchNorm becomes an ``nn.Identity``. The copy is for forward passes (its folded parameters do not
    require gradients); it is checked against the original on ``example`` and, if the outputs differ by
    more than float rounding, not used (``report.ok`` is False and the original module is returned).

    Args:
        module: any network in evaluation mode; it is called once on ``example`` with hooks.
        example: a batch the module accepts (its values should be typical inputs).

    Returns:
        (the folded copy, or ``module`` itself when nothing was folded or the check failed; a :class:`FoldReport`).

    Shape:
        - example: whatever ``module`` takes, usually (B, C, H, W).

    Examples:
        >>> import torch
        >>> from foolbench.models._fold import fold_batchnorm
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()).eval()
        >>> folded, report = fold_batchnorm(net, torch.rand(2, 3, 8, 8))
        >>> report.folded, type(folded[1]).__name__
        ([('0', '1')], 'Identity')
    """
    pairs, batchnorms = _pairs(module, example)
    if not pairs:
        return module, FoldReport([], batchnorms, 0.0, ok=True)
    folded = copy.deepcopy(module).eval()
    for conv_name, bn_name in pairs:
        _absorb(folded.get_submodule(conv_name), folded.get_submodule(bn_name))  # type: ignore[arg-type]
        _set(folded, bn_name, nn.Identity())
    with torch.no_grad():
        ref, out = module(example), folded(example)
    if not (isinstance(ref, torch.Tensor) and isinstance(out, torch.Tensor)) or ref.shape != out.shape:
        return module, FoldReport([], batchnorms, float("inf"), ok=False)
    diff = float((out.float() - ref.float()).abs().max())
    scale = float(ref.float().abs().max())
    tolerance = 1e-3 if ref.dtype in (torch.float32, torch.float64) else 5e-2  # (half precision rounds coarsely)
    ok = diff <= tolerance * max(1.0, scale)
    if not ok:
        return module, FoldReport([], batchnorms, diff, ok=False)
    return folded, FoldReport(pairs, batchnorms, diff, ok=True)
