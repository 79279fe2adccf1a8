"""Batched image filters shared by the searches and the defenses; device and dtype follow the input."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["gaussian_blur", "median_filter", "reduce_bit_depth"]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (B, C, H, W) batch (reflect padding); device and dtype follow ``x``.

    Examples:
        >>> gaussian_blur(torch.rand(2, 3, 16, 16), 1.0).shape
        torch.Size([2, 3, 16, 16])
    """
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad_h = min(radius, x.shape[2] - 1)
    pad_w = min(radius, x.shape[3] - 1)
    k_w, k_h = _cut(k, radius, pad_w), _cut(k, radius, pad_h)
    y = F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect" if pad_w else "replicate")
    y = F.conv2d(y, k_w.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.pad(y, (0, 0, pad_h, pad_h), mode="reflect" if pad_h else "replicate")
    return F.conv2d(y, k_h.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _cut(k: torch.Tensor, radius: int, pad: int) -> torch.Tensor:
    """The kernel's middle ``2 pad + 1`` taps, summing to 1 (a side shorter than the kernel cuts it)."""
    if pad == radius:
        return k
    cut = k[radius - pad : radius + pad + 1]
    return cut / cut.sum()


def median_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Median over each ``size`` x ``size`` window (odd size, reflect padding) of a (B, C, H, W) batch.

    Examples:
        >>> x = torch.zeros(1, 1, 5, 5)
        >>> x[0, 0, 2, 2] = 1.0  # salt noise vanishes
        >>> float(median_filter(x, 3).abs().max())
        0.0
    """
    r = size // 2
    pad_h, pad_w = min(r, x.shape[2] - 1), min(r, x.shape[3] - 1)
    y = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect") if pad_h or pad_w else x
    y = F.pad(y, (r - pad_w, r - pad_w, r - pad_h, r - pad_h), mode="replicate") if (pad_h < r or pad_w < r) else y
    windows = y.unfold(2, size, 1).unfold(3, size, 1)  # (B, C, H, W, size, size)
    return windows.reshape(*windows.shape[:4], -1).median(dim=-1).values


def reduce_bit_depth(x: torch.Tensor, bits: int, lower: float = 0.0, upper: float = 1.0) -> torch.Tensor:
    """Quantise values in [lower, upper] to ``2 ** bits`` evenly spaced levels (feature squeezing).

    Examples:
        >>> reduce_bit_depth(torch.tensor([0.0, 0.3, 0.7, 1.0]), 1).tolist()
        [0.0, 0.0, 1.0, 1.0]
    """
    levels = (1 << bits) - 1
    scale = upper - lower
    return torch.round((x - lower) / scale * levels) / levels * scale + lower
