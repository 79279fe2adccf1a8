"""Fused CPPN render in Triton (private; imported lazily, only when the Triton backend runs).

One program paints ``BLOCK_P`` pixels of one genome. The node values of those pixels live
in registers as a (``BLOCK_R``, ``BLOCK_P``) block: rows 0..3 hold the inputs ``x``, ``y``,
``d`` and the bias, and the program walks the genome's hidden nodes in topological order,
each step a weighted sum over the rows computed so far followed by the node's activation,
written into the next row. The outputs are then computed from the finished block and
written to the image: one read of the weights per program and one write per pixel, instead
of reading and writing every node's values for every pixel at every step.

The weights arrive already gathered into evaluation order by
:meth:`foolbench.encodings.CPPNEncoding.render` (the layout its tensor path uses), so this
kernel and the tensor path compute the same sums in the same topological order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from foolbench.errors import MissingDependencyError

try:
    import triton  # type: ignore[import-untyped,import-not-found,unused-ignore]
    import triton.language as tl  # type: ignore[import-untyped,import-not-found,unused-ignore]
except ImportError:  # optional: the module still imports (doctest collection); render() refuses
    triton = None
    tl = None

__all__ = ["ACTIVATION_CODES", "render"]

#: Kernel code of each activation name (matches :data:`foolbench.encodings.ACTIVATIONS`).
ACTIVATION_CODES = {"sine": 0, "sigmoid": 1, "gaussian": 2, "linear": 3, "cosine": 4, "tanh": 5, "abs": 6}


def _jit(fn: Callable[..., Any]) -> Any:
    return fn if triton is None else triton.jit(fn)


@_jit
def _tanh(x):  # type: ignore[no-untyped-def]
    # odd-symmetric form: exact sign, no overflow (exp(-2|x|) <= 1), absolute error ~1e-7 in float32
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@_jit
def _activate(x, code):  # type: ignore[no-untyped-def]
    if code == 0:
        y = tl.sin(x)
    elif code == 1:
        y = _tanh(0.5 * x)
    elif code == 2:
        y = 2.0 * tl.exp(-x * x) - 1.0
    elif code == 3:
        y = tl.minimum(tl.maximum(x, -10.0), 10.0)
    elif code == 4:
        y = tl.cos(x)
    elif code == 5:
        y = _tanh(x)
    else:
        y = tl.minimum(tl.abs(x), 10.0)
    return y


@_jit
def _hidden_step(vals, w_row, code_row, s, sources, r):  # type: ignore[no-untyped-def]
    """Hidden node ``s``: its weighted sum over the sources before it, activated, written to row 4 + s."""
    w = tl.load(w_row + s * sources + r, mask=r < 4 + s, other=0.0)
    pre = tl.sum(w[:, None] * vals, axis=0)
    y = _activate(pre, tl.load(code_row + s))
    return tl.where(r[:, None] == 4 + s, y[None, :], vals)


@_jit
def _render_kernel(  # type: ignore[no-untyped-def]
    grid_ptr,  # (4, P) inputs x, y, d, 1
    w_ptr,  # (B, T, R) weights in evaluation order: T = S + C targets, R = 4 + S sources
    code_ptr,  # (B, T) int32 activation codes
    steps_ptr,  # (B,) int32 hidden nodes per genome
    out_ptr,  # (B, C, P)
    pixels,
    targets,
    sources,
    max_steps,
    C: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_P: tl.constexpr,
    INTERPRET: tl.constexpr,
    INTERPRET_STEPS: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)  # (b * C + c) * pixels passes 2**31 from 14,300 genomes at 3x224x224
    offs = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs < pixels
    r = tl.arange(0, BLOCK_R)
    vals = tl.load(grid_ptr + r[:, None] * pixels + offs[None, :], mask=(r[:, None] < 4) & pmask[None, :], other=0.0)
    w_row = w_ptr + b * targets * sources
    code_row = code_ptr + b * targets
    steps = tl.load(steps_ptr + b)
    if INTERPRET:  # the interpreter (see render): a loop of constant length, steps past the genome's skipped
        for s in tl.static_range(INTERPRET_STEPS):
            if s < steps:
                vals = _hidden_step(vals, w_row, code_row, s, sources, r)
    else:
        for s in range(steps):
            vals = _hidden_step(vals, w_row, code_row, s, sources, r)
    for c in tl.static_range(C):
        w = tl.load(w_row + (max_steps + c) * sources + r, mask=r < sources, other=0.0)
        pre = tl.sum(w[:, None] * vals, axis=0)
        y = _activate(pre, tl.load(code_row + max_steps + c))
        y = (tl.minimum(tl.maximum(y, -1.0), 1.0) + 1.0) * 0.5
        tl.store(out_ptr + (b * C + c) * pixels + offs, y, mask=pmask)


def render(
    grid: torch.Tensor,
    w: torch.Tensor,
    codes: torch.Tensor,
    sizes: torch.Tensor,
    outputs: int,
    *,
    block_p: int | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """Output images of a batch whose weights are in evaluation order.

    Args:
        grid: (4, P) pixel inputs.
        w: (B, S + C, 4 + S) weights; row ``s < S`` computes hidden step ``s``, row ``S + c`` output ``c``.
        codes: (B, S + C) activation codes (:data:`ACTIVATION_CODES`).
        sizes: (B,) hidden nodes per genome (at most S).
        outputs: C.
        block_p: pixels per program (a power of two; default 128 compiled, up to 4,096 interpreted).
        num_warps: warps per program (default 1 compiled: four pixels per thread); for tuning benchmarks.

    Returns:
        (B, C, P) pixel values in [0, 1], in ``w``'s dtype (float64 stays float64, anything else
        is computed in float32).

    Raises:
        MissingDependencyError: Triton is not installed.
    """
    if triton is None:
        raise MissingDependencyError("the fused CPPN render needs Triton: pip install triton")
    compute = torch.float64 if w.dtype == torch.float64 else torch.float32
    b, targets, sources = w.shape
    pixels = grid.shape[1]
    out = torch.empty(b, outputs, pixels, device=w.device, dtype=compute)
    if b == 0 or pixels == 0:
        return out.to(w.dtype)
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    # the interpreter runs programs one after the other: fewer, larger blocks keep it quick
    if block_p is None:
        block_p = min(triton.next_power_of_2(pixels), 4096) if interpreted else 128
    if num_warps is None and not interpreted:
        # four pixels per thread: on an H100 (256 genomes, 16.7 nodes, 224x224x3) 128 pixels x 1 warp took
        # 0.79 ms, 512 x 4 0.94, 256 x 2 0.97, Triton's default 128 x 4 3.31 and 128 x 8 11.6 (tools/gpu_probe.py)
        num_warps = 1
    block_r = max(16, triton.next_power_of_2(sources))
    launch = (b, triton.cdiv(pixels, block_p))
    _render_kernel[launch](
        grid.to(compute).contiguous(),
        w.to(compute).contiguous(),
        codes.to(torch.int32).contiguous(),
        sizes.to(torch.int32).contiguous(),
        out,
        pixels,
        targets,
        sources,
        targets - outputs,
        C=outputs,
        BLOCK_R=block_r,
        BLOCK_P=block_p,
        # Triton 3.6's interpreter (seen with NumPy 2.4 and 2.5; 3.9's can) cannot loop over a run-time count; the interpreter
        # does not compile, so a constant loop length costs it nothing. Compiled kernels keep range(steps).
        INTERPRET=interpreted,
        INTERPRET_STEPS=(targets - outputs) if interpreted else 0,
        **({} if num_warps is None else {"num_warps": num_warps}),
    )
    return out.to(w.dtype)
