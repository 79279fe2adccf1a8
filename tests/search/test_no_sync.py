"""The step loops read nothing back to the host (issue 14): every tensor-to-Python conversion is trapped.

On CPU a read-back costs nothing, so this is checked by making ``bool(tensor)``, ``.item()``,
``int()``, ``float()``, ``.tolist()`` and ``nonzero`` raise while the loops run, and by a dispatch
mode that fails on the ATen ops that synchronise on CUDA (``_local_scalar_dense``, ``nonzero``,
``masked_select``, boolean-mask indexing, ``unique``...), which catches reads Python never sees.
On CUDA the same code then never waits for the device between steps.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

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


class _Probe(TorchDispatchMode):
    """Fails on the ATen ops that synchronise with the host on CUDA, including those Python never sees
    (boolean-mask indexing, ``masked_select``, ``torch.where(cond)``, ``unique``)."""

    SYNCING = frozenset(
        {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::is_nonzero", "aten::equal"}
        | {"aten::_unique2", "aten::unique_dim", "aten::unique_consecutive", "aten::allclose"}
        | {"aten::bincount", "aten::repeat_interleave"}
    )

    def __init__(self) -> None:
        super().__init__()
        # by id, each with a weak reference to tell a live tensor from a later one at the same address
        # (a WeakSet would compare tensors with ==, which is element-wise)
        self._from_python: dict[int, weakref.ref[torch.Tensor]] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func._schema.name
        if name in self.SYNCING:
            raise HostRead(f"host-synchronising op inside the step: {name}")
        if name in ("aten::index", "aten::index_put", "aten::index_put_") and any(
            i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]
        ):
            raise HostRead(f"host-synchronising op inside the step: boolean-mask {name}")
        if name in ("aten::index_put", "aten::index_put_") and self._made_from_python(args[2]):
            # ``t[idx] = True``: the value is a host tensor made from Python data, which index_put copies
            # to the device and waits for (the single-class survivor mask did this; seen on an H100)
            raise HostRead(f"host-synchronising op inside the step: {name} of a Python value")
        out = func(*args, **(kwargs or {}))
        if name == "aten::lift_fresh":
            self._from_python[id(out)] = weakref.ref(out)
        return out

    def _made_from_python(self, t: Any) -> bool:
        ref = self._from_python.get(id(t))
        return ref is not None and ref() is t


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
    with no_host_reads(monkeypatch), _Probe():
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
    with no_host_reads(monkeypatch), _Probe():
        for _ in range(2):
            v = update(lenet, x, yb, v, guard)
    guard.check()
    assert float(v.abs().max()) <= 0.3 + 1e-6


def test_the_dispatch_probe_catches_hidden_syncs() -> None:
    x = torch.randn(6)

    def assign() -> None:
        x.clone()[x > 0] = 0.0

    def assign_python_value() -> None:
        torch.zeros(6, dtype=torch.bool)[torch.tensor([1, 3])] = True

    def assign_python_values() -> None:
        torch.zeros(6)[torch.tensor([1, 3])] = torch.tensor([2.0, 5.0])

    hidden_ops: list[Any] = [
        lambda: x[x > 0],
        assign,
        assign_python_value,
        assign_python_values,
        lambda: torch.where(x > 0),
        lambda: torch.unique(x),
        lambda: x.masked_select(x > 0),
        lambda: torch.bincount((x > 0).long()),
        lambda: torch.repeat_interleave(torch.tensor([1, 2])),
    ]
    for hidden in hidden_ops:
        with _Probe(), pytest.raises(HostRead):
            hidden()
    with _Probe():
        torch.where(x > 0, x, 0.0).cumsum(0)  # element-wise ops pass
        y = x.clone()
        y[:2] = 0.0  # a slice fill takes the number as a scalar
        y[torch.tensor([1, 3])] = x.max()  # a device value
        torch.zeros(6, dtype=torch.bool).index_fill_(0, torch.tensor([1, 3]), True)


#: (parents, crossover) for the generation-step checks here and on CUDA (test_evolution_seams)
SELECTOR_CASES = [
    ("unmet-first", 0.0),
    ("uniform", 0.0),
    ("curiosity", 0.0),
    ("weakest", 0.0),
    (fb.search.Focus([3, 8]), 0.0),
    ("unmet-first", 0.5),
]


def _trapped_generations(
    s: fb.search.MAPElites, ev: fb.search.LocalEvaluator, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Generation 0 (it allocates the archive), then ``n`` generations with every host read trapped.

    The archive takes its CUDA branch; the CPPN's tensor render (the CPU reference) reads genome sizes back
    to plan its chunks, so for CPPNs the evaluation runs outside the trap.
    """
    s.step()
    s.archive.sync_free = True
    direct = isinstance(s.encoding, fb.encodings.DirectEncoding)
    for _ in range(n):
        with no_host_reads(monkeypatch), _Probe():
            genomes = s.ask()
            if direct:
                scores = ev(genomes)
        if not direct:
            scores = ev(genomes)
        with no_host_reads(monkeypatch), _Probe():
            s._commit(s._scores(scores))


@pytest.mark.parametrize(
    "encoding",
    [fb.encodings.DirectEncoding((1, 28, 28), mutation_rate=0.05), fb.encodings.CPPNEncoding((1, 28, 28))],
    ids=["direct", "cppn"],
)
@pytest.mark.parametrize(("parents", "crossover"), SELECTOR_CASES, ids=str)
def test_generation_step(
    encoding: fb.encodings.Encoding,
    parents: str | fb.search.ParentSelector,
    crossover: float,
    lenet: fb.models.TorchClassifier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Selection, mutation, render, evaluation and archive insert of a generation, as on CUDA.

    The CPPN's tensor render (the CPU reference) reads genome sizes back to plan its chunks, so for
    CPPNs the evaluation runs outside the trap; on CUDA the Triton kernel renders without a read
    (the CUDA test in test_evolution_seams covers it there).
    """
    ev = fb.search.LocalEvaluator(lenet, encoding, checked=False)  # the CUDA setting
    s = fb.search.MAPElites(lenet, encoding, batch_size=32, seed=0, parents=parents, evaluator=ev, crossover=crossover)
    _trapped_generations(s, ev, 4, monkeypatch)
    assert s.generation == 5 and s.evaluations == 5 * 32
    assert len(s.result().history) == 5


def test_single_class_generation_step(lenet: fb.models.TorchClassifier, monkeypatch: pytest.MonkeyPatch) -> None:
    """The (mu + lambda) baseline's tournament, mutation, evaluation and survivor selection."""
    enc = fb.encodings.DirectEncoding((1, 28, 28), mutation_rate=0.05)
    ev = fb.search.LocalEvaluator(lenet, enc, checked=False)
    s = fb.search.SingleClassEvolution(lenet, enc, target=3, batch_size=16, population=12, seed=0, evaluator=ev)
    s.step()
    with no_host_reads(monkeypatch), _Probe():
        for _ in range(4):
            s._step()
    assert s.generation == 5


@pytest.mark.parametrize(
    "encoding",
    [fb.encodings.DirectEncoding((1, 28, 28)), fb.encodings.CPPNEncoding((1, 28, 28))],
    ids=["direct", "cppn"],
)
def test_random_search_step(
    encoding: fb.encodings.Encoding, lenet: fb.models.TorchClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RandomSearch: a fresh sample, its evaluation (CPPN: outside the trap, as above) and the archive insert."""
    ev = fb.search.LocalEvaluator(lenet, encoding, checked=False)
    s = fb.search.RandomSearch(lenet, encoding, batch_size=16, seed=0, evaluator=ev)
    _trapped_generations(s, ev, 3, monkeypatch)
    assert s.generation == 4


class _Count(TorchDispatchMode):
    """Counts the host-synchronising ops (see :class:`_Probe`) instead of failing on them."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += func._schema.name in _Probe.SYNCING
        return func(*args, **(kwargs or {}))


def test_run_loop_reads_back_only_every_sync_every_generations(lenet: fb.models.TorchClassifier) -> None:
    """Target check and progress bar read the device once per ``sync_every`` generations, not per step."""
    enc = fb.encodings.DirectEncoding((1, 28, 28), mutation_rate=0.05)
    counts = {}
    for every in (1, 8):
        ev = fb.search.LocalEvaluator(lenet, enc, checked=False)
        s = fb.search.MAPElites(lenet, enc, batch_size=16, seed=0, evaluator=ev)
        s.step()
        s.archive.sync_free = True
        with _Count() as probe:
            s.run(generations=33, target_confidence=0.9999, progress=True, sync_every=every)
        counts[every] = probe.count
    assert counts[1] >= 32  # at least one read per generation
    assert counts[8] <= counts[1] / 6  # reads every 8th generation (and at the end)


@pytest.mark.parametrize(
    "encoding",
    [fb.encodings.DirectEncoding((1, 28, 28), mutation_rate=0.05), fb.encodings.CPPNEncoding((1, 28, 28))],
    ids=["direct", "cppn"],
)
def test_generation_step_with_near_strength(
    encoding: fb.encodings.Encoding, lenet: fb.models.TorchClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``NearStrength``: which children descend from a near elite is decided on the device."""
    ev = fb.search.LocalEvaluator(lenet, encoding, checked=False)
    sched = fb.search.NearStrength(2.0, near_confidence=0.5)
    s = fb.search.MAPElites(lenet, encoding, batch_size=32, seed=0, evaluator=ev, mutation_schedule=sched)
    _trapped_generations(s, ev, 4, monkeypatch)
    assert s.generation == 5


def test_generation_step_with_refined_near_children(
    lenet: fb.models.TorchClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``NearStrength(refine=)``: refining the near children reads nothing back either."""
    encoding = fb.encodings.CPPNEncoding((1, 28, 28))
    ev = fb.search.LocalEvaluator(lenet, encoding, checked=False)
    sched = fb.search.NearStrength(2.0, near_confidence=0.5, refine=0.02)
    s = fb.search.MAPElites(lenet, encoding, batch_size=32, seed=0, evaluator=ev, mutation_schedule=sched)
    _trapped_generations(s, ev, 4, monkeypatch)
    assert s.generation == 5
