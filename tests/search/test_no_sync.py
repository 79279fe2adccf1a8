"""The step loops read nothing back to the host (issue 14): every tensor-to-Python conversion is trapped.

On CPU a read-back costs nothing, so this is checked by making ``bool(tensor)``, ``.item()``,
``int()``, ``float()``, ``.tolist()`` and ``nonzero`` raise while the loops run; on CUDA the same
code then never waits for the device between steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

import foolbench as fb
from foolbench.search import _calls


class HostRead(AssertionError):
    pass


@contextmanager
def no_host_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def trap(name: str) -> Any:
        def raise_(*args: object, **kwargs: object) -> Any:
            raise HostRead(f"host read inside the step loop: Tensor.{name}")

        return raise_

    with monkeypatch.context() as m:
        for name in ("__bool__", "item", "__int__", "__float__", "__index__", "tolist", "nonzero"):
            m.setattr(torch.Tensor, name, trap(name))
        m.setattr(torch, "nonzero", trap("nonzero"))
        yield


@pytest.mark.parametrize(
    "attack",
    [
        fb.search.FGSM(0.1),
        fb.search.PGD(0.1, steps=5),
        fb.search.PGD(1.0, steps=5, norm="2"),
        fb.search.DeepFool(steps=5, check_every=100),
        fb.search.SquareAttack(eps=0.1, queries=5, check_every=100),
    ],
)
def test_attack_step_loops(
    attack: fb.search.Attack, lenet: fb.models.TorchClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = fb.models.mnist_digits("test", limit=8)
    gen = torch.Generator().manual_seed(0)
    guard = _calls.FiniteGuard("test")
    bar = _calls.progress_bar(None, False, "test")
    with no_host_reads(monkeypatch):
        adv, _ = attack._run(lenet, x, y, None, gen, bar, guard)
    guard.check()
    assert adv.shape == x.shape


def test_the_trap_catches_a_read(monkeypatch: pytest.MonkeyPatch) -> None:
    with no_host_reads(monkeypatch), pytest.raises(HostRead):
        bool(torch.ones(1) > 0)


@pytest.mark.parametrize("method", ["sgd", "deepfool"])
def test_uap_updates(method: str, lenet: fb.models.TorchClassifier, monkeypatch: pytest.MonkeyPatch) -> None:
    x, _ = fb.models.mnist_digits("train", limit=16)
    uap = fb.search.UniversalPerturbation(eps=0.3, method=method, deepfool_steps=3)
    uap.deepfool.check_every = 100
    yb = lenet.predict(x)
    v = torch.zeros(1, 28, 28)
    guard = _calls.FiniteGuard("test")
    update = uap._sgd_update if method == "sgd" else uap._deepfool_update
    with no_host_reads(monkeypatch):
        for _ in range(2):
            v = update(lenet, x, yb, v, guard)
    guard.check()
    assert float(v.abs().max()) <= 0.3 + 1e-6
