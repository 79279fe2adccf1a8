"""The fused Triton render equals the tensor path; bad backends and kernel failures are handled."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

from foolbench.encodings import ACTIVATIONS, CPPNEncoding
from foolbench.encodings import _cppn as cppn_module
from foolbench.errors import InvalidArgumentError, MissingDependencyError

HAS_TRITON = importlib.util.find_spec("triton") is not None
ROOT = Path(__file__).resolve().parents[2]

# Renders grown genomes (every activation present) with both backends and prints the largest
# differences as JSON. float32 genomes grown with the default rates must agree within 1e-5; genomes
# with extreme weights (+-10, many connections) are compared in float64, where both paths are exact
# up to round-off (in float32 the reference itself is ~1e-4 off its own float64 result there).
SCRIPT = r"""
import json, sys, warnings
import torch
from foolbench.encodings import ACTIVATIONS, CPPNEncoding, CPPNGenomes

warnings.simplefilter("error")  # a fallback to the tensor path would raise, not pass silently
device = sys.argv[1]
names = tuple(sorted(ACTIVATIONS))
report = []
for shape, size, extreme in [((1, 12, 12), None, False), ((3, 9, 14), None, False), ((3, 9, 14), (7, 5), True),
                             ((1, 10, 6), (16, 11), True)]:
    kw = dict(add_node=0.9, add_connection=0.9, init_weight=10.0) if extreme else {}
    ref = CPPNEncoding(shape, activations=names, max_nodes=20, max_connections=60, backend="torch", **kw)
    fused = CPPNEncoding(shape, activations=names, max_nodes=20, max_connections=60, backend="triton")
    g = ref.sample(6, torch.Generator().manual_seed(0))
    rng = torch.Generator().manual_seed(1)
    for _ in range(60):
        g = ref.mutate(g, rng)
    ref.validate(g)
    used = g.activation[:, 4:][g.active[:, 4:]].unique().tolist()
    g[torch.tensor([0, 3])] = ref.sample(2, torch.Generator().manual_seed(5))  # minimal ones: sizes differ
    if extreme:
        g = CPPNGenomes(g.weight.double(), g.edge, g.active, g.activation, g.order)
    g = g.to(device)
    a, b = ref.render(g, size=size), fused.render(g, size=size)
    report.append({"shape": list(a.shape), "dtype": str(a.dtype), "diff": float((a - b).abs().max()),
                   "activations": used, "nodes": g.num_nodes().tolist(), "same_dtype": a.dtype == b.dtype})
print(json.dumps(report))
"""


def run_script(device: str, interpret: bool) -> list[dict[str, object]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if interpret:
        env["TRITON_INTERPRET"] = "1"  # read when Triton is imported: hence a fresh interpreter
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, device], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: list[dict[str, object]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def check_report(report: list[dict[str, object]]) -> None:
    assert [r["shape"] for r in report] == [[6, 1, 12, 12], [6, 3, 9, 14], [6, 3, 7, 5], [6, 1, 16, 11]]
    for r in report:
        assert r["same_dtype"], r
        assert sorted(r["activations"]) == list(range(len(ACTIVATIONS))), r  # type: ignore[call-overload]
        channels = r["shape"][1]  # type: ignore[index]
        assert min(r["nodes"]) == 4 + channels < 12 < max(r["nodes"]), r  # type: ignore[call-overload]
        limit = 1e-5 if r["dtype"] == "torch.float32" else 1e-10
        assert r["diff"] <= limit, r  # type: ignore[operator]


@pytest.mark.skipif(not HAS_TRITON, reason="needs triton")
def test_triton_interpreter_equals_tensor_path() -> None:
    check_report(run_script("cpu", interpret=True))


@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs triton and CUDA")
def test_triton_cuda_equals_tensor_path() -> None:
    check_report(run_script("cuda", interpret=False))


@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs triton and CUDA")
def test_auto_backend_uses_the_kernel_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = CPPNEncoding((3, 16, 16))
    g = enc.sample(4, torch.Generator().manual_seed(0)).to("cuda")
    calls: list[bool] = []
    original = CPPNEncoding._render_triton

    def spy(self: CPPNEncoding, *args: torch.Tensor) -> torch.Tensor | None:
        calls.append(True)
        return original(self, *args)

    monkeypatch.setattr(CPPNEncoding, "_render_triton", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.render(g)
    assert calls == [True]


def test_backend_switch_is_validated() -> None:
    with pytest.raises(InvalidArgumentError, match=r"backend must be one of \['auto', 'torch', 'triton'\], got 'cuda'"):
        CPPNEncoding((1, 8, 8), backend="cuda")
    assert "backend='torch'" in repr(CPPNEncoding((1, 8, 8), backend="torch"))


def test_triton_backend_without_triton_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cppn_module, "_triton_available", lambda: False)
    with pytest.raises(MissingDependencyError, match="pip install triton"):
        CPPNEncoding((1, 8, 8), backend="triton")
    enc = CPPNEncoding((1, 8, 8))  # auto: the tensor path, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert enc.render(enc.sample(2, torch.Generator().manual_seed(0))).shape == (2, 1, 8, 8)


def test_kernel_failure_falls_back_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cppn_module, "_triton_available", lambda: True)
    fused = CPPNEncoding((3, 10, 12), backend="triton")
    ref = CPPNEncoding((3, 10, 12), backend="torch")
    g = ref.sample(5, torch.Generator().manual_seed(0))
    rng = torch.Generator().manual_seed(1)
    for _ in range(20):
        g = ref.mutate(g, rng)

    def broken(*args: object) -> torch.Tensor:
        raise RuntimeError("no GPU here")

    kernel = types.ModuleType("foolbench.encodings._cppn_triton")
    kernel.ACTIVATION_CODES = {name: i for i, name in enumerate(ACTIVATIONS)}  # type: ignore[attr-defined]
    kernel.render = broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "foolbench.encodings._cppn_triton", kernel)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = fused.render(g)
        second = fused.render(g)
    assert [str(w.message)[:43] for w in caught] == ["CPPNEncoding: the Triton render failed (Run"]
    assert "no GPU here" in str(caught[0].message) and caught[0].category is RuntimeWarning
    assert torch.equal(first, ref.render(g)) and torch.equal(second, first)


def test_package_import_does_not_import_triton() -> None:
    code = "import sys, foolbench, torch; e = foolbench.encodings.CPPNEncoding((1, 8, 8)); "
    code += "e.render(e.sample(2, torch.Generator())); print('triton' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
