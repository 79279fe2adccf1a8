"""The Encoding protocol (how a genome becomes an image) and what a batch of genomes must support."""

from __future__ import annotations

import inspect
import operator
import weakref
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from typing_extensions import Self, TypeVar

__all__ = ["Encoding", "Genomes", "TensorBatch", "changed_settings", "is_clean", "mark_clean", "select_rows"]

_CLEAN = "_foolbench_clean"  # attribute of a clean batch: (owner, ((weakref to field, its version), ...))


_B = TypeVar("_B")


def mark_clean(batch: _B, *, owner: Any = None) -> _B:
    """Record that ``batch`` is known valid (finite, in range) as its tensors are now; returns it.

    An encoding marks what it makes (``sample``, ``mutate`` of a clean batch) and what passed its
    checks, so a later call can skip a check that would read values back from the device. The
    mark remembers each field's tensor and in-place version counter: replacing a field or writing
    into it (``g.weight[0] = nan``) makes the batch unclean again. Writes that bypass the version
    counter (``.data``, NumPy views) are not seen. Plain tensors and inference-mode tensors (which
    have no version counter) are never marked.

    Args:
        batch: the batch to mark.
        owner: what the batch was checked against, where that differs between encodings of one
            genome type (a CPPN encoding's activation names: ids valid for one may not be for
            another); :func:`is_clean` with another ``owner`` then says no.
    """
    if isinstance(batch, TensorBatch):
        tensors = [getattr(batch, name) for name in batch.fields]
        if not any(t.is_inference() for t in tensors):
            setattr(batch, _CLEAN, (owner, tuple((weakref.ref(t), t._version) for t in tensors)))
    return batch


def is_clean(batch: Any, *, owner: Any = None) -> bool:
    """Whether ``batch`` carries a :func:`mark_clean` mark that still matches its tensors (of ``owner``, unless None)."""
    stamp = getattr(batch, _CLEAN, None)
    if stamp is None or not isinstance(batch, TensorBatch):
        return False
    marked_by, refs = stamp
    if owner is not None and marked_by != owner:
        return False
    tensors = [getattr(batch, name) for name in batch.fields]
    return len(refs) == len(tensors) and all(
        ref() is t and version == t._version for (ref, version), t in zip(refs, tensors, strict=True)
    )


def _owner(batch: Any) -> Any:
    """The ``owner`` of ``batch``'s clean mark (None without one)."""
    stamp = getattr(batch, _CLEAN, None)
    return None if stamp is None else stamp[0]


def _keep_mark(out: _B, *sources: Any) -> _B:
    """Mark ``out`` clean where every source is clean under one owner (a part, copy or mix of clean batches)."""
    owner = _owner(sources[0])
    if all(is_clean(src, owner=owner) for src in sources):
        mark_clean(out, owner=owner)
    return out


@runtime_checkable
class Genomes(Protocol):
    """A batch of genomes: all a search needs to select, copy and replace them.

    ``torch.Tensor`` (the direct encoding's genomes) and :class:`TensorBatch` subclasses
    (such as :class:`foolbench.encodings.CPPNGenomes`) satisfy it.

    Examples:
        >>> import torch
        >>> isinstance(torch.zeros(2, 1, 4, 4), Genomes)
        True
    """

    @property
    def device(self) -> torch.device:
        """Where the batch lives."""
        ...

    def __len__(self) -> int:
        """B, the number of genomes."""
        ...

    def __getitem__(self, index: Any) -> Self:
        """A sub-batch (``index`` an int tensor, a bool mask or a slice; a :class:`TensorBatch` also takes an
        int: a batch of one)."""
        ...

    def __setitem__(self, index: Any, value: Self) -> None:
        """Replace the genomes at ``index`` by ``value``, in place."""
        ...

    def to(self, device: torch.device | str) -> Self:
        """The batch on ``device``."""
        ...


def _is_scalar_index(index: Any) -> bool:
    """An int, a NumPy int or a 0-d integer tensor: one genome."""
    if isinstance(index, torch.Tensor):
        return index.dim() == 0 and not index.is_floating_point() and index.dtype != torch.bool
    if isinstance(index, bool):
        return False
    try:
        operator.index(index)
    except TypeError:
        return False
    return True


def select_rows(mask: torch.Tensor, new: Any, old: Any) -> Any:
    """Genome ``i`` of ``new`` where ``mask[i]``, else of ``old``; no host synchronisation.

    Works on tensors and :class:`TensorBatch` batches of the same length without a host read; any
    other :class:`Genomes` batch through indexing with the mask (which reads it back).

    Shape:
        - mask: (B,) bool.

    Examples:
        >>> import torch
        >>> select_rows(torch.tensor([True, False]), torch.ones(2, 3), torch.zeros(2, 3)).sum(1).tolist()
        [3.0, 0.0]
    """

    def pick(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.view(-1, *([1] * (a.dim() - 1))), a, b)

    if isinstance(new, torch.Tensor):
        return pick(new, old)
    if not isinstance(old, TensorBatch):  # a genome type of its own: only what Genomes promises (reads the mask)
        out = old[torch.arange(len(old), device=mask.device)]
        out[mask] = new[mask]
        return out
    out = type(old)(*(pick(getattr(new, f), getattr(old, f)) for f in old.fields))
    return _keep_mark(out, new, old)


class TensorBatch:
    """Base of a batch held as named tensors that share their first dimension (B).

    A subclass lists its tensor attributes in ``fields`` and takes them, in that order, as
    constructor arguments (a dataclass does); indexing, assignment, copies, moves and the
    checkpoint dictionary are then defined once, over every field.

    Examples:
        >>> import torch
        >>> class Pair(TensorBatch):
        ...     fields = ("a", "b")
        ...     def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        ...         self.a, self.b = a, b
        >>> p = Pair(torch.arange(4), torch.zeros(4, 2))
        >>> len(p), p[torch.tensor([1, 3])].a.tolist(), sorted(p.as_dict())
        (4, [1, 3], ['a', 'b'])
    """

    fields: ClassVar[tuple[str, ...]] = ()

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The tensors by field name (the checkpoint format)."""
        return {name: getattr(self, name) for name in self.fields}

    def _map(self, fn: Any) -> Self:
        out = type(self)(*(fn(getattr(self, name)) for name in self.fields))
        return _keep_mark(out, self)  # a part or copy of a clean batch is clean

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop(_CLEAN, None)  # weak references do not pickle; a loaded batch is checked again
        return state

    def __len__(self) -> int:
        return int(getattr(self, self.fields[0]).shape[0])

    def __getitem__(self, index: Any) -> Self:
        if _is_scalar_index(index):  # g[0], g[scores.argmax()]: a batch of one, not a genome's rows
            index = index.reshape(1) if isinstance(index, torch.Tensor) else [operator.index(index)]
        return self._map(lambda t: t[index])

    def __setitem__(self, index: Any, value: Self) -> None:
        for name in self.fields:
            getattr(self, name)[index] = getattr(value, name)

    @property
    def device(self) -> torch.device:
        """The device of the first field."""
        device: torch.device = getattr(self, self.fields[0]).device
        return device

    def clone(self) -> Self:
        """A deep copy, contiguous."""
        return self._map(lambda t: t.clone(memory_format=torch.contiguous_format))

    def to(self, device: torch.device | str) -> Self:
        """The batch on ``device``."""
        return self._map(lambda t: t.to(device))


#: The genome type of an encoding (``Encoding[torch.Tensor]``, ``Encoding[CPPNGenomes]``);
#: a bare ``Encoding`` accepts any.
G = TypeVar("G", bound=Genomes, default=Any)


def changed_settings(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that differ from the default of the same keyword of ``cls``'s constructor.

    Examples:
        >>> class Enc:
        ...     def __init__(self, *, rate: float = 0.1, eta: float = 15.0) -> None: ...
        >>> changed_settings(Enc, {"rate": 0.5, "eta": 15.0})
        {'rate': 0.5}
    """
    params = inspect.signature(cls).parameters
    return {k: v for k, v in values.items() if v != params[k].default}


@runtime_checkable
class Encoding(Protocol[G]):
    """Maps genomes to images; all operations work on whole batches.

    Generic in its genome type ``G`` (a :class:`Genomes` batch). An encoding may also offer
    ``crossover(genomes, mates, generator, *, probability=1.0) -> G`` (both shipped ones do), which
    ``MAPElites(crossover=...)`` uses to breed children from two elites, and
    ``refine(genomes, generator, *, scale) -> G`` (small moves of the continuous genes only; CPPN has it),
    which ``NearStrength(refine=...)`` uses for the children of elites near the aim.

    Attributes:
        image_shape: (C, H, W) of a rendered image.

    Examples:
        >>> import foolbench as fb
        >>> isinstance(fb.encodings.CPPNEncoding((1, 8, 8)), Encoding)
        True
    """

    image_shape: tuple[int, int, int]

    def sample(self, n: int, generator: torch.Generator) -> G:
        """``n`` random initial genomes on the generator's device."""
        ...

    def mutate(self, genomes: G, generator: torch.Generator, *, strength: float = 1.0) -> G:
        """Mutated copies of ``genomes`` (the input is left unchanged).

        ``strength`` (finite, > 0) multiplies the encoding's mutation rates; 1 is the encoding's own
        rates. Each encoding documents exactly what it scales.
        """
        ...

    def render(self, genomes: G) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1]; one tensor program for the whole batch."""
        ...

    def config(self) -> dict[str, Any]:
        """The settings that define the genome space and its variation (used to validate checkpoints).

        A search resumed from a checkpoint must breed as the interrupted one did, so settings that
        change ``mutate`` (rates, step sizes) belong here too; the built-in encodings list those that
        differ from their defaults, so a checkpoint of default settings reads the same in every version.
        """
        ...

    def genomes_to_state(self, genomes: G) -> dict[str, torch.Tensor]:
        """Tensors that hold ``genomes`` (for checkpoints loaded with ``weights_only=True``)."""
        ...

    def genomes_from_state(self, state: dict[str, torch.Tensor]) -> G:
        """Inverse of :meth:`genomes_to_state`; raises on tensors from another configuration."""
        ...


@runtime_checkable
class Differentiable(Protocol[G]):
    """An encoding whose continuous genes a gradient can move (both shipped encodings are).

    :class:`foolbench.search.GradientPolish` reads a batch's genes, paints them differentiably, and
    writes the moved genes back; the structure (a CPPN's nodes and connections) stays as it is.

    Attributes:
        gene_bounds: (low, high), the range every gene is kept in.

    Examples:
        >>> import foolbench as fb
        >>> isinstance(fb.encodings.CPPNEncoding((1, 8, 8)), Differentiable)
        True
    """

    gene_bounds: tuple[float, float]

    def genes(self, genomes: G) -> torch.Tensor:
        """A float copy of the batch's continuous genes, (B, ...)."""
        ...

    def render_genes(self, genomes: G, genes: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] of ``genomes`` with ``genes`` in place of their own; autograd flows
        to ``genes``."""
        ...

    def with_genes(self, genomes: G, genes: torch.Tensor) -> G:
        """A copy of ``genomes`` holding ``genes`` (clipped to :attr:`gene_bounds`)."""
        ...
