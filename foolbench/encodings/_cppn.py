"""CPPN encoding: NEAT-style networks that paint images, a whole batch at a time.

A compositional pattern-producing network (Stanley 2007) maps every pixel's
coordinates ``(x, y, d, bias)`` to its intensity, so the images it paints show
symmetry, repetition and gradients: the regular fooling images of Nguyen et al. (2015).

Layout of a batch (:class:`CPPNGenomes`): every genome has ``max_nodes`` node slots,

* slots ``0..3`` are the inputs ``x``, ``y``, ``d`` (distance from the centre) and a bias of 1,
* the next ``C`` slots are the outputs, one per image channel,
* the remaining slots hold hidden nodes, used or free (``active``),

and a dense adjacency: ``edge[b, j, i]`` says whether genome ``b`` has a connection
from node ``i`` into node ``j`` and ``weight[b, j, i]`` is its weight. Every node
carries an ``order`` key (inputs 0, outputs 1, hidden nodes strictly between);
connections only go from a lower to a higher key, so every genome is acyclic by
construction, and evaluating hidden nodes by increasing key is a topological order
for the whole batch at once.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from foolbench import _checks
from foolbench.encodings._base import TensorBatch, changed_settings, is_clean, mark_clean
from foolbench.encodings._direct import polynomial_mutation
from foolbench.errors import CheckpointError, InvalidArgumentError, InvalidTypeError, MissingDependencyError

__all__ = ["ACTIVATIONS", "CPPNEncoding", "CPPNGenomes"]

NUM_INPUTS = 4
WEIGHT_LIMIT = 10.0
_LINEAR_LIMIT = 10.0
#: The gaussian's exponent is floored here: below it ``2 exp(v) - 1`` rounds to -1 in float32 and
#: float64 alike (``exp(-50) < 2e-22``), so the values are the same, and the CPU's ``exp`` skips its slow
#: path for arguments that underflow (about 25x slower per element on the 2-core Xeon).
_EXP_FLOOR = -50.0


def _sine(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x)


def _sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(0.5 * x)  # the bipolar sigmoid 2 / (1 + exp(-x)) - 1


def _gaussian(x: torch.Tensor) -> torch.Tensor:
    return 2.0 * torch.exp((-x * x).clamp(min=_EXP_FLOOR)) - 1.0


def _linear(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-_LINEAR_LIMIT, _LINEAR_LIMIT)


def _cosine(x: torch.Tensor) -> torch.Tensor:
    return torch.cos(x)


def _tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x)


def _abs(x: torch.Tensor) -> torch.Tensor:
    return x.abs().clamp(max=_LINEAR_LIMIT)


#: Activation functions a node may use, by name. ``sigmoid`` and ``gaussian`` are the
#: bipolar forms (range [-1, 1]) and ``linear``/``abs`` are clipped to [-10, 10], so every
#: value stays finite whatever the weights.
ACTIVATIONS = {
    "sine": _sine,
    "sigmoid": _sigmoid,
    "gaussian": _gaussian,
    "linear": _linear,
    "cosine": _cosine,
    "tanh": _tanh,
    "abs": _abs,
}

#: The same functions applied in place on a tensor the caller owns (the same float operations in the
#: same order, so the same values): the CPU render then allocates nothing per node.
_IN_PLACE: dict[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]] = {
    _sine: torch.Tensor.sin_,
    _sigmoid: lambda x: x.mul_(0.5).tanh_(),
    _gaussian: lambda x: x.mul_(x).neg_().clamp_(min=_EXP_FLOOR).exp_().mul_(2.0).sub_(1.0),
    _linear: lambda x: x.clamp_(-_LINEAR_LIMIT, _LINEAR_LIMIT),
    _cosine: torch.Tensor.cos_,
    _tanh: torch.Tensor.tanh_,
    _abs: lambda x: x.abs_().clamp_(max=_LINEAR_LIMIT),
}

#: Rows of mixed activations: each activation once over its own rows, in place (True), or every
#: activation over every row and a ``torch.where`` each (False, the path autograd follows).
_GROUP_ROWS = True


def _in_place(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn(x)``, written into ``x`` (which the caller owns) when ``fn`` has an in-place twin."""
    twin = _IN_PLACE.get(fn)
    return twin(x) if twin is not None else fn(x)


@dataclass(eq=False)  # tensors compare element-wise: batches compare (and hash) by identity
class CPPNGenomes(TensorBatch):
    """A batch of CPPN genomes held as padded tensors (see the module docstring for the layout).

    Supports ``len(g)``, ``g[index]`` (a sub-batch; ``index`` an int tensor, bool mask, slice, or an int: a batch of one),
    ``g[index] = other`` (in place), ``clone()``, ``to(device)`` and ``as_dict()``, all from
    :class:`foolbench.encodings.TensorBatch`: a :class:`foolbench.encodings.Genomes` batch.

    Attributes:
        weight: (B, N, N) float, ``weight[b, j, i]`` for the connection i -> j (0 where absent).
        edge: (B, N, N) bool, which connections exist.
        active: (B, N) bool, which node slots are in use (inputs and outputs always are).
        activation: (B, N) int64, index into the encoding's ``activations`` per node.
        order: (B, N) float64 topological key: inputs 0, outputs 1, hidden nodes in (0, 1).

    Examples:
        >>> import torch
        >>> from foolbench.encodings import CPPNEncoding
        >>> g = CPPNEncoding((3, 8, 8)).sample(4, torch.Generator().manual_seed(0))
        >>> len(g), g[torch.tensor([0, 2])].weight.shape, g.num_connections().tolist()
        (4, torch.Size([2, 32, 32]), [12, 12, 12, 12])
    """

    fields = ("weight", "edge", "active", "activation", "order")

    weight: torch.Tensor
    edge: torch.Tensor
    active: torch.Tensor
    activation: torch.Tensor
    order: torch.Tensor

    def num_nodes(self) -> torch.Tensor:
        """(B,) nodes in use per genome, inputs and outputs included."""
        return self.active.sum(1)

    def num_connections(self) -> torch.Tensor:
        """(B,) connections per genome."""
        return self.edge.flatten(1).sum(1)


BACKENDS = ("auto", "torch", "triton")


@functools.cache
def _triton_available() -> bool:
    """Whether Triton can be imported (checked without importing it)."""
    return importlib.util.find_spec("triton") is not None


#: The tensor render pads each row of pixel values to whole multiples of this many bytes (a cache line).
_ALIGN_BYTES = 64


#: On a CPU, the tensor render computes each node of an image of at least this many pixels from its own
#: connections (a weighted sum of the few rows they come from) instead of a matrix product over every row
#: before it: a search's genomes have one or two connections per node, and at 224x224 the product read
#: about 13 rows of 50,176 values per hidden node (memory-bound). Below it the batched product is faster (many
#: genomes per chunk; the sum costs a few Python steps per node). ``bench_cppn_render.py`` times both.
_SPARSE_MIN_PIXELS = 8192


def _default_budget(device: torch.device) -> int:
    # values held per render chunk: small enough to stay in a CPU's cache, large enough to fill a GPU
    return 1 << 28 if device.type == "cuda" else 1 << 20


def _pick(mask: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One uniformly random True position per row of ``mask`` (B, K); ``ok`` is False for empty rows."""
    u = torch.rand(mask.shape, generator=generator, device=generator.device).to(mask.device)
    idx = torch.where(mask, u, torch.full_like(u, -1.0)).argmax(1)
    return idx, mask.any(1)


def _chance(g: CPPNGenomes, probability: float, generator: torch.Generator) -> torch.Tensor:
    """(B,) bool: which genomes an operator applies to."""
    return (torch.rand(len(g), generator=generator, device=generator.device) < probability).to(g.device)


def _uniform(g: CPPNGenomes, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B,) uniform numbers in [0, 1) on the genomes' device."""
    return torch.rand(len(g), generator=generator, device=generator.device, dtype=dtype).to(g.device)


def _new_activations(g: CPPNGenomes, generator: torch.Generator, count: int) -> torch.Tensor:
    """(B,) random activation ids on the genomes' device."""
    return torch.randint(0, count, (len(g),), generator=generator, device=generator.device).to(g.device)


def _hidden_slots(g: CPPNGenomes, first_hidden: int) -> torch.Tensor:
    slots = torch.zeros(g.active.shape[1], dtype=torch.bool, device=g.device)
    slots[first_hidden:] = True
    return slots


def _set_at(t: torch.Tensor, idx: torch.Tensor, do: torch.Tensor, value: torch.Tensor | float | bool) -> None:
    """``t[r, idx[r]] = value`` (or ``value[r]``) for the rows ``r`` where ``do``; in place, no host read.

    A gather, a where and a scatter over every row instead of a boolean row selection: the
    operators never ask the device how many genomes they change.

    Shape:
        - t: (B, K); idx, do: (B,); value: a scalar or (B,).
    """
    col = idx[:, None]
    current = t.gather(1, col)
    new = value[:, None].to(t.dtype) if isinstance(value, torch.Tensor) else torch.full_like(current, value)
    t.scatter_(1, col, torch.where(do[:, None], new, current))


# Mutation operators: each changes the batch ``g`` in place, for the genomes its coin flip picks,
# with element-wise tensor operations only (no host synchronisation, so a CUDA step never waits).
def _delete_connection(g: CPPNGenomes, generator: torch.Generator, probability: float) -> None:
    """Remove one random connection."""
    idx, ok = _pick(g.edge.flatten(1), generator)
    do = _chance(g, probability, generator) & ok
    _set_at(g.edge.view(len(g), -1), idx, do, False)  # views: clone() made the batch contiguous
    _set_at(g.weight.view(len(g), -1), idx, do, 0.0)


def _delete_node(g: CPPNGenomes, generator: torch.Generator, probability: float, first_hidden: int) -> None:
    """Remove one random hidden node with its connections."""
    node, ok = _pick(g.active & _hidden_slots(g, first_hidden), generator)
    do = _chance(g, probability, generator) & ok
    kill = (torch.arange(g.active.shape[1], device=g.device) == node[:, None]) & do[:, None]
    touching = kill[:, :, None] | kill[:, None, :]
    g.active &= ~kill
    g.edge &= ~touching
    g.weight.masked_fill_(touching, 0.0)


def _add_node(
    g: CPPNGenomes,
    generator: torch.Generator,
    probability: float,
    first_hidden: int,
    max_connections: int,
    num_activations: int,
) -> None:
    """Split a random connection i -> j into i -> new (weight 1) and new -> j (the old weight)."""
    n = g.active.shape[1]
    idx, has_edge = _pick(g.edge.flatten(1), generator)
    free, has_free = _pick(~g.active & _hidden_slots(g, first_hidden), generator)
    room = g.num_connections() < max_connections
    do = _chance(g, probability, generator) & has_edge & has_free & room
    j, i = idx // n, idx % n
    rows = torch.arange(len(g), device=g.device)
    low, high = g.order[rows, i], g.order[rows, j]
    key = low + (0.25 + 0.5 * _uniform(g, generator, torch.float64)) * (high - low)
    do &= (key > low) & (key < high)  # a key strictly between its ends (round-off could tie)
    new_act = _new_activations(g, generator, num_activations)
    edge, weight = g.edge.view(len(g), -1), g.weight.view(len(g), -1)
    old = weight.gather(1, idx[:, None])[:, 0]
    # the new node s is inactive before, so (j, i), (s, i) and (j, s) are three distinct cells
    _set_at(edge, idx, do, False)
    _set_at(weight, idx, do, 0.0)
    _set_at(g.active, free, do, True)
    _set_at(g.order, free, do, key)
    _set_at(g.activation, free, do, new_act)
    _set_at(edge, free * n + i, do, True)
    _set_at(weight, free * n + i, do, 1.0)
    _set_at(edge, j * n + free, do, True)
    _set_at(weight, j * n + free, do, old)


def _add_connection(
    g: CPPNGenomes, generator: torch.Generator, probability: float, max_connections: int, init_weight: float
) -> None:
    """Add one random connection i -> j from a lower to a higher key (the network stays acyclic)."""
    forward = g.order[:, None, :] < g.order[:, :, None]
    candidates = g.active[:, :, None] & g.active[:, None, :] & forward & ~g.edge
    idx, ok = _pick(candidates.flatten(1), generator)
    room = g.num_connections() < max_connections
    w = (_uniform(g, generator) * 2 - 1) * init_weight
    do = _chance(g, probability, generator) & ok & room
    _set_at(g.edge.view(len(g), -1), idx, do, True)
    _set_at(g.weight.view(len(g), -1), idx, do, w)


def _change_weights(
    g: CPPNGenomes, generator: torch.Generator, probability: float, share: float, eta: float, scale: float
) -> None:
    """Perturb ``share`` of a genome's connections (at least one) by bounded polynomial mutation.

    Each step is ``scale`` times the polynomial-mutation step, clipped to [-10, 10]. The steps are
    drawn for every weight slot and used where a connection is hit, so the number of draws never
    depends on the genomes (no host read).
    """
    do = _chance(g, probability, generator)
    u = torch.rand(g.edge.shape, generator=generator, device=generator.device).to(g.device)
    hit = g.edge & (u < share) & do[:, None, None]
    one, ok = _pick(g.edge.flatten(1), generator)
    _set_at(hit.view(len(g), -1), one, do & ok, True)
    x = (g.weight + WEIGHT_LIMIT) / (2 * WEIGHT_LIMIT)
    step = torch.rand(g.edge.shape, generator=generator, device=generator.device).to(x)
    moved = polynomial_mutation(x, step, eta)
    if scale != 1.0:
        moved = (x + scale * (moved - x)).clamp_(0.0, 1.0)
    g.weight.copy_(torch.where(hit, moved * (2 * WEIGHT_LIMIT) - WEIGHT_LIMIT, g.weight))


def _check_weight_range(g: CPPNGenomes) -> None:
    """Refuse a non-empty batch with a weight outside [-WEIGHT_LIMIT, WEIGHT_LIMIT] (mutation assumes the range)."""
    if len(g) and g.weight.abs().max() > WEIGHT_LIMIT:
        raise InvalidArgumentError(
            f"genomes.weight must lie in [-{WEIGHT_LIMIT:g}, {WEIGHT_LIMIT:g}], "
            f"got a weight of {float(g.weight.abs().max()):g}"
        )


def _change_activation(g: CPPNGenomes, generator: torch.Generator, probability: float, num_activations: int) -> None:
    """Give one random non-input node a random activation."""
    non_input = torch.arange(g.active.shape[1], device=g.device) >= NUM_INPUTS
    node, ok = _pick(g.active & non_input, generator)
    new_act = _new_activations(g, generator, num_activations)
    _set_at(g.activation, node, _chance(g, probability, generator) & ok, new_act)


class CPPNEncoding:
    """Genomes are compositional pattern-producing networks, rendered as one batch.

    Each genome is a NEAT-style acyclic network over the pixel inputs ``x``, ``y``
    (in [-1, 1] across the image), ``d = sqrt(x^2 + y^2)`` and a bias of 1, with one
    output per image channel (1 for grayscale, 3 for colour). An output's activation
    is clipped to [-1, 1] and mapped to a pixel in [0, 1]. Because coordinates are
    relative, :meth:`render` can paint the same genome at any resolution: the same
    pattern, with more pixels.

    Initial genomes are minimal: every input wired to every output, weights uniform
    in [-``init_weight``, ``init_weight``], activations random. Each call to
    :meth:`mutate` applies, independently per genome and with the given probabilities
    (defaults: the original's; ``strength`` scales them), in this order: delete a connection, delete a hidden node
    (and its connections), add a node (splits a random connection i -> j into
    i -> new (weight 1) and new -> j (the old weight)), add a connection (between
    two nodes that keep the network acyclic), perturb weights (bounded polynomial
    mutation in [-10, 10]), and change a node's activation.

    Capacity: a genome never has more than ``max_nodes`` nodes (4 inputs and the
    outputs included) nor more than ``max_connections`` connections; a mutation that
    would exceed either is skipped for that genome.

    Args:
        image_shape: (C, H, W) of rendered images; C outputs.
        max_nodes: node slots per genome, at least 4 + C + 1.
        max_connections: connection budget per genome, at least 4 * C (the minimal network).
        activations: names from :data:`ACTIVATIONS` that nodes may use.
        add_connection: probability that a genome gains a connection per mutation, in [0, 1].
        delete_connection: probability that a genome loses a connection.
        change_connection: probability that a genome's weights are perturbed.
        add_node: probability that a genome gains a node (splitting a connection).
        delete_node: probability that a genome loses a hidden node.
        change_activation: probability that a node of the genome changes its activation.
        weight_rate: once a genome's weights are perturbed, the share of its connections
            perturbed (at least one).
        eta: polynomial mutation distribution index for the weights (> 0).
        init_weight: initial weights are uniform in [-init_weight, init_weight], at most 10.
        render_budget: node values (genomes x nodes x pixels) computed per render chunk of the tensor
            path; None picks 2**20 on CPU (a chunk stays in cache) and 2**28 on CUDA (a chunk fills the GPU).
            On a CPU, images of 8,192 pixels or more are painted one genome at a time, each node summed
            from its own connections (a search's genomes have one or two per node) rather than by a
            product over every row before it, and the budget does not apply (2.2-2.5x faster at 224x224;
            the images differ from the product's by float rounding).
        backend: how :meth:`render` paints. ``"torch"``: the batched tensor path (any device, the
            reference). ``"triton"``: the fused Triton kernel (one program paints a block of pixels
            of one genome, node values kept in registers); needs Triton, and CUDA tensors unless
            ``TRITON_INTERPRET=1`` was set before Triton was imported. ``"auto"`` (default): the kernel
            for genomes on CUDA when Triton is installed, the tensor path otherwise. If the kernel
            fails at run time, the encoding warns once (``RuntimeWarning``) and uses the tensor path
            from then on; it never returns a partial image. The kernel computes in float32 (float64
            genomes in float64) and matches the tensor path within 1e-5 for float32 and float64
            genomes; float16 / bfloat16 genomes it computes in float32, where the tensor path keeps
            their precision (they then differ by up to about 1e-2).

    Raises:
        InvalidArgumentError: unknown activation names, too small capacities, bad rates, unknown backend.
        MissingDependencyError: ``backend="triton"`` without Triton installed.

    Shape:
        - genomes: a :class:`CPPNGenomes` batch of B genomes.
        - render output: (B, C, H, W) in [0, 1].

    Examples:
        >>> import torch
        >>> enc = CPPNEncoding((1, 28, 28))
        >>> g = enc.sample(8, torch.Generator().manual_seed(0))
        >>> for _ in range(20):
        ...     g = enc.mutate(g, torch.Generator().manual_seed(_))
        >>> img = enc.render(g)
        >>> img.shape, bool(img.min() >= 0 and img.max() <= 1)
        (torch.Size([8, 1, 28, 28]), True)
        >>> enc.render(g, size=(84, 84)).shape  # the same patterns, three times larger
        torch.Size([8, 1, 84, 84])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        max_nodes: int = 32,
        max_connections: int = 128,
        activations: Sequence[str] = ("sine", "sigmoid", "gaussian", "linear"),
        add_connection: float = 0.5,
        delete_connection: float = 0.3,
        change_connection: float = 0.5,
        add_node: float = 0.5,
        delete_node: float = 0.2,
        change_activation: float = 0.2,
        weight_rate: float = 0.2,
        eta: float = 15.0,
        init_weight: float = 3.0,
        render_budget: int | None = None,
        backend: str = "auto",
    ) -> None:
        self.image_shape = _checks.shape3("image_shape", image_shape)
        self.num_outputs = self.image_shape[0]
        minimum_nodes = NUM_INPUTS + self.num_outputs + 1
        self.max_nodes = _checks.positive_int("max_nodes", max_nodes)
        if self.max_nodes < minimum_nodes:
            raise InvalidArgumentError(
                f"max_nodes must be at least {minimum_nodes} for {self.num_outputs} output(s) "
                f"(4 inputs, the outputs and one hidden node), got {max_nodes}"
            )
        minimum_connections = NUM_INPUTS * self.num_outputs
        self.max_connections = _checks.positive_int("max_connections", max_connections)
        if self.max_connections < minimum_connections:
            raise InvalidArgumentError(
                f"max_connections must be at least {minimum_connections} (every input wired to each of "
                f"{self.num_outputs} output(s)), got {max_connections}"
            )
        if isinstance(activations, str) or not isinstance(activations, Sequence) or not activations:
            raise InvalidArgumentError(
                f"activations must be a non-empty sequence of names from {sorted(ACTIVATIONS)}, got {activations!r}"
            )
        unknown = [a for a in activations if a not in ACTIVATIONS]
        if unknown:
            raise InvalidArgumentError(
                f"activations has unknown name(s) {unknown}; expected names from {sorted(ACTIVATIONS)}"
            )
        if len(set(activations)) != len(activations):
            raise InvalidArgumentError(f"activations must not repeat a name, got {list(activations)}")
        self.activations = tuple(activations)
        # a batch another encoding checked may hold activation ids out of this one's range, or another
        # number of outputs (a grayscale genome's hidden nodes in a colour one's output slots): not clean here
        self._owner = ("CPPNEncoding", self.activations, self.num_outputs)
        rates = {
            "add_connection": add_connection,
            "delete_connection": delete_connection,
            "change_connection": change_connection,
            "add_node": add_node,
            "delete_node": delete_node,
            "change_activation": change_activation,
            "weight_rate": weight_rate,
        }
        self.rates = {k: _checks.real(k, v, low=0.0, high=1.0) for k, v in rates.items()}
        self.eta = _checks.real("eta", eta, low=0.0, low_open=True)
        self.init_weight = _checks.real("init_weight", init_weight, low=0.0, high=WEIGHT_LIMIT, low_open=True)
        self.render_budget = _checks.optional_positive_int("render_budget", render_budget)
        if backend not in BACKENDS:
            raise InvalidArgumentError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        if backend == "triton" and not _triton_available():
            raise MissingDependencyError(
                "backend='triton' needs Triton, which is not installed: pip install triton "
                "(CUDA builds of PyTorch ship it); backend='auto' uses it only where present"
            )
        self.backend = backend
        self._triton_failed = False
        self._grids: dict[tuple[int, int, str, torch.dtype], torch.Tensor] = {}
        self._tables: dict[str, torch.Tensor] = {}

    def __repr__(self) -> str:
        return (
            f"CPPNEncoding(image_shape={self.image_shape}, max_nodes={self.max_nodes}, "
            f"max_connections={self.max_connections}, activations={self.activations}, backend={self.backend!r})"
        )

    # ------------------------------------------------------------------ genomes
    @property
    def _first_hidden(self) -> int:
        return NUM_INPUTS + self.num_outputs

    def sample(self, n: int, generator: torch.Generator) -> CPPNGenomes:
        """``n`` minimal genomes (inputs wired to outputs, random weights and activations), on the generator's device.

        Raises:
            InvalidTypeError: ``generator`` not a :class:`torch.Generator`.
        """
        _checks.positive_int("n", n)
        dev = _checks.torch_generator("generator", generator).device
        big_n, outs = self.max_nodes, self.num_outputs
        weight = torch.zeros(n, big_n, big_n, device=dev)
        edge = torch.zeros(n, big_n, big_n, dtype=torch.bool, device=dev)
        edge[:, NUM_INPUTS : NUM_INPUTS + outs, :NUM_INPUTS] = True
        w = (torch.rand(n, outs, NUM_INPUTS, generator=generator, device=dev) * 2 - 1) * self.init_weight
        weight[:, NUM_INPUTS : NUM_INPUTS + outs, :NUM_INPUTS] = w
        active = torch.zeros(n, big_n, dtype=torch.bool, device=dev)
        active[:, : self._first_hidden] = True
        activation = torch.randint(0, len(self.activations), (n, big_n), generator=generator, device=dev)
        order = torch.full((n, big_n), 0.5, dtype=torch.float64, device=dev)
        order[:, :NUM_INPUTS] = 0.0
        order[:, NUM_INPUTS : self._first_hidden] = 1.0
        return mark_clean(CPPNGenomes(weight, edge, active, activation, order), owner=self._owner)

    def _check(self, genomes: Any, name: str = "genomes") -> CPPNGenomes:
        if not isinstance(genomes, CPPNGenomes):
            raise InvalidTypeError(
                f"{name} must be CPPNGenomes (from CPPNEncoding.sample), got {type(genomes).__name__}"
            )
        n = self.max_nodes
        if genomes.weight.dim() != 3 or tuple(genomes.weight.shape[1:]) != (n, n):
            raise InvalidArgumentError(
                f"{name} do not fit {self!r}: expected weight of shape (B, {n}, {n}), got {tuple(genomes.weight.shape)}"
            )
        return genomes

    def _check_ids(self, g: CPPNGenomes) -> None:
        """Refuse a non-empty batch with an activation id outside this encoding's range."""
        if len(g) and (g.activation.min() < 0 or g.activation.max() >= len(self.activations)):
            raise InvalidArgumentError(
                f"genomes.activation must hold ids in [0, {len(self.activations) - 1}], "
                f"got ids from {int(g.activation.min())} to {int(g.activation.max())}"
            )

    def _check_fixed_nodes(self, g: CPPNGenomes) -> None:
        """Refuse a non-empty batch whose input and output slots are not active with keys 0 and 1 (a batch made
        for another number of outputs fails here)."""
        if not len(g):
            return
        fixed = self._first_hidden
        if not g.active[:, :fixed].all():
            raise InvalidArgumentError("genomes.active must be True for the input and output nodes")
        if (g.order[:, :NUM_INPUTS] != 0).any() or (g.order[:, NUM_INPUTS:fixed] != 1).any():
            raise InvalidArgumentError("genomes.order must be 0 for inputs and 1 for outputs")

    def validate(self, genomes: CPPNGenomes) -> None:
        """Check every invariant of a batch; raise :class:`InvalidArgumentError` naming the first broken one.

        Checked: tensor shapes and dtypes, finite weights within [-10, 10], activation
        ids in range, inputs/outputs active with keys 0/1, hidden keys in (0, 1),
        connections only between active nodes and from lower to higher key (acyclic),
        none into an input, and the node and connection capacities.
        """
        g = self._check(genomes)
        b, n = len(g), self.max_nodes
        expected = {
            "weight": ((b, n, n), None),
            "edge": ((b, n, n), torch.bool),
            "active": ((b, n), torch.bool),
            "activation": ((b, n), torch.int64),
            "order": ((b, n), torch.float64),
        }
        for name, (shape, dtype) in expected.items():
            t = getattr(g, name)
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise InvalidArgumentError(f"genomes.{name} must have shape {shape}, got {got}")
            if dtype is not None and t.dtype != dtype:
                raise InvalidArgumentError(f"genomes.{name} must have dtype {dtype}, got {t.dtype}")
        if not g.weight.is_floating_point():
            raise InvalidArgumentError(f"genomes.weight must be floating point, got {g.weight.dtype}")
        if not torch.isfinite(g.weight).all():
            raise InvalidArgumentError("genomes.weight must be finite, got NaN or inf")
        if not len(g):  # an empty batch is valid (the reductions below need an element)
            return
        _check_weight_range(g)
        self._check_ids(g)
        self._check_fixed_nodes(g)
        fixed = self._first_hidden
        hidden = g.order[:, fixed:][g.active[:, fixed:]]
        if hidden.numel() and ((hidden <= 0).any() or (hidden >= 1).any() or not torch.isfinite(hidden).all()):
            raise InvalidArgumentError("genomes.order of active hidden nodes must lie strictly in (0, 1)")
        both_active = g.active[:, :, None] & g.active[:, None, :]
        if (g.edge & ~both_active).any():
            raise InvalidArgumentError("genomes.edge connects a node that is not active")
        forward = g.order[:, None, :] < g.order[:, :, None]  # [b, j, i]: key(i) < key(j)
        if (g.edge & ~forward).any():
            raise InvalidArgumentError("genomes.edge has a connection against the topological order (a cycle)")
        if (g.weight[~g.edge] != 0).any():
            raise InvalidArgumentError("genomes.weight must be 0 where there is no connection")
        if (g.num_connections() > self.max_connections).any():
            raise InvalidArgumentError(
                f"genomes exceed max_connections={self.max_connections}: "
                f"up to {int(g.num_connections().max())} connections"
            )
        # checked in full: later renders (a resumed search's parents) need not read it again
        mark_clean(g, owner=self._owner)

    # ---------------------------------------------------------------- mutation
    def mutate(self, genomes: CPPNGenomes, generator: torch.Generator, *, strength: float = 1.0) -> CPPNGenomes:
        """Mutated copies of ``genomes`` (the input is not modified); see the class docstring.

        The six operators run in a fixed order (delete connection, delete node, add node, add
        connection, change weights, change activation), each on its own random draws, so the same
        generator state gives the same children.

        Args:
            genomes: a batch from this encoding.
            generator: the source of every random draw.
            strength: multiplies the mutation: each operator's probability becomes
                ``min(1, probability * strength)``, and each perturbed weight moves ``strength`` times
                the polynomial-mutation step (in the normalised [0, 1] range, clipped to it, so weights
                stay in [-10, 10]). ``weight_rate`` (the share of a genome's connections perturbed) is
                not scaled. 1 is the encoding's own rates; the search's schedule lowers it over time.

        Returns:
            B mutated genomes.

        Raises:
            InvalidArgumentError: ``strength`` not a finite number > 0; genomes of another configuration, or
                (in a batch not made or checked by this encoding) a weight outside [-10, 10].
            InvalidTypeError: ``generator`` not a :class:`torch.Generator`.

        Shape:
            - genomes, output: B genomes.
        """
        strength = _checks.real("strength", strength, low=0.0, low_open=True)
        clean = is_clean(self._check(genomes), owner=self._owner)
        generator = _checks.torch_generator("generator", generator)
        if not clean:  # a weight past the range would mutate into NaN
            _check_weight_range(genomes)
        g = genomes.clone()
        if not len(g):  # an empty batch has nothing to mutate (and draws nothing)
            return g
        p = {k: min(1.0, v * strength) for k, v in self.rates.items() if k != "weight_rate"}
        hidden = self._first_hidden
        _delete_connection(g, generator, p["delete_connection"])
        _delete_node(g, generator, p["delete_node"], hidden)
        _add_node(g, generator, p["add_node"], hidden, self.max_connections, len(self.activations))
        _add_connection(g, generator, p["add_connection"], self.max_connections, self.init_weight)
        _change_weights(g, generator, p["change_connection"], self.rates["weight_rate"], self.eta, strength)
        _change_activation(g, generator, p["change_activation"], len(self.activations))
        return mark_clean(g, owner=self._owner) if clean else g  # the operators keep a finite batch finite

    def refine(self, genomes: CPPNGenomes, generator: torch.Generator, *, scale: float = 0.02) -> CPPNGenomes:
        """Copies of ``genomes`` with only some connection weights moved, by small steps.

        In every copy ``weight_rate`` of its connections (at least one, where it has any) each move by
        ``scale`` times a polynomial-mutation step (``eta``) in the normalised weight range, clipped so
        weights stay in [-10, 10] (a weight at a bound may draw no move, so a copy can come out unchanged).
        The number of random draws depends only on the batch's shape. Nodes, connections and activations
        are kept. :meth:`mutate` at strength 1 moves a weight by 0.83 on the median (4.8 at the 99th
        percentile) and changes the structure of most children, which near the aim throws away more than
        it finds: of 288 children of three EfficientNet-Lite0 elites at 94.98-98.86%, 0 beat their elite
        when mutated at strength 2, 10 at strength 1, and 73 refined at scale 0.01
        (``benchmarks/bench_near_children.py``). With
        :class:`~foolbench.search.NearStrength` (``refine=``) a search refines the children of the elites
        near the aim.

        Args:
            genomes: a batch from this encoding.
            generator: the source of every random draw (the same number whatever the genomes).
            scale: the step, as a share of the polynomial-mutation step, in (0, 1].

        Returns:
            B refined genomes (new tensors; the input is not modified).

        Raises:
            InvalidArgumentError: ``scale`` outside (0, 1]; genomes of another configuration, or
                (in a batch not made or checked by this encoding) a weight outside [-10, 10].
            InvalidTypeError: ``generator`` not a :class:`torch.Generator`.

        Shape:
            - genomes, output: B genomes.

        Examples:
            >>> import torch
            >>> enc = CPPNEncoding((1, 8, 8))
            >>> g = enc.sample(4, torch.Generator().manual_seed(0))
            >>> child = enc.refine(g, torch.Generator().manual_seed(1), scale=0.05)
            >>> torch.equal(child.edge, g.edge), bool((child.weight != g.weight).any(dim=(1, 2)).all())
            (True, True)
        """
        scale = _checks.real("scale", scale, low=0.0, high=1.0, low_open=True)
        clean = is_clean(self._check(genomes), owner=self._owner)
        generator = _checks.torch_generator("generator", generator)
        if not clean:
            _check_weight_range(genomes)
        g = genomes.clone()
        if not len(g):
            return g
        _change_weights(g, generator, 1.0, self.rates["weight_rate"], self.eta, scale)
        return mark_clean(g, owner=self._owner) if clean else g

    def crossover(
        self, genomes: CPPNGenomes, mates: CPPNGenomes, generator: torch.Generator, *, probability: float = 1.0
    ) -> CPPNGenomes:
        """Children of ``genomes`` that take some matching genes from ``mates`` (NEAT-style, by slot).

        A child keeps its first parent's topology (so it stays acyclic and within capacity); with
        ``probability`` per child, each connection present in both parents takes the mate's weight
        with chance 1/2, and each hidden or output node active in both takes the mate's activation
        with chance 1/2. Slots stand for NEAT's innovation numbers, which holds for genes inherited
        from a shared ancestor (in a MAP-Elites archive, elites of one lineage often win several
        classes) and for the input -> output connections every genome starts with; between unrelated
        lineages a hidden slot usually holds different nodes, and crossing them acts as a large mutation.

        Args:
            genomes: first parents (their topology is kept).
            mates: second parents, same batch size.
            generator: the source of every random draw (the same number whatever the genomes).
            probability: share of the children that are crossed, in [0, 1]; the others are copies.

        Returns:
            B children (new tensors; the inputs are not modified).

        Raises:
            InvalidArgumentError: batches of different sizes or of another configuration, or
                ``probability`` outside [0, 1].
            InvalidTypeError: ``genomes`` or ``mates`` not :class:`CPPNGenomes`, ``generator`` not a
                :class:`torch.Generator`.

        Shape:
            - genomes, mates, output: B genomes.

        Examples:
            >>> import torch
            >>> enc = CPPNEncoding((1, 8, 8))
            >>> a, b = enc.sample(4, torch.Generator().manual_seed(0)), enc.sample(4, torch.Generator().manual_seed(1))
            >>> child = enc.crossover(a, b, torch.Generator().manual_seed(2))
            >>> torch.equal(child.edge, a.edge), bool(((child.weight == a.weight) | (child.weight == b.weight)).all())
            (True, True)
        """
        probability = _checks.real("probability", probability, low=0.0, high=1.0)
        a, b = self._check(genomes), self._check(mates, "mates")
        generator = _checks.torch_generator("generator", generator)
        if len(a) != len(b):
            raise InvalidArgumentError(f"mates must have as many genomes as genomes ({len(a)}), got {len(b)}")
        b = b.to(a.device)
        clean = is_clean(a, owner=self._owner) and is_clean(b, owner=self._owner)
        do = _chance(a, probability, generator)
        u_w = torch.rand(a.edge.shape, generator=generator, device=generator.device).to(a.device)
        u_a = torch.rand(a.active.shape, generator=generator, device=generator.device).to(a.device)
        take_w = a.edge & b.edge & (u_w < 0.5) & do[:, None, None]
        non_input = torch.arange(a.active.shape[1], device=a.device) >= NUM_INPUTS
        take_a = a.active & b.active & non_input & (u_a < 0.5) & do[:, None]
        child = a.clone()
        child.weight.copy_(torch.where(take_w, b.weight, a.weight))
        child.activation.copy_(torch.where(take_a, b.activation, a.activation))
        return mark_clean(child, owner=self._owner) if clean else child

    # --------------------------------------------------------------- rendering
    def _grid(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (height, width, str(device), dtype)
        grid = self._grids.get(key)
        if grid is None:
            # pixel centres, so a k-times larger render samples the same points at offset k // 2
            ys = (torch.arange(height, device=device, dtype=torch.float64) * 2 + 1) / height - 1
            xs = (torch.arange(width, device=device, dtype=torch.float64) * 2 + 1) / width - 1
            y, x = torch.meshgrid(ys, xs, indexing="ij")
            d = torch.sqrt(x * x + y * y)
            grid = torch.stack([x, y, d, torch.ones_like(x)]).reshape(NUM_INPUTS, -1).to(dtype)
            self._grids[key] = grid
        return grid

    def render(self, genomes: CPPNGenomes, *, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Paint the batch: hidden nodes are evaluated in topological order for all genomes at once.

        Args:
            genomes: a batch from this encoding.
            size: (H, W) to render at instead of the encoding's; the pattern scales with it.

        Returns:
            Images in [0, 1], on the genomes' device.

        Raises:
            InvalidArgumentError: genomes of another configuration (another number of outputs included), NaN
                weights or activation ids out of range (checked in a batch not made or checked by this encoding).

        Shape:
            - output: (B, C, H, W)
        """
        g = self._check(genomes)
        if size is None:
            height, width = self.image_shape[1:]
        else:
            if not isinstance(size, (tuple, list)) or len(size) != 2:
                raise InvalidArgumentError(f"size must be (H, W), got {size!r}")
            for i, side in enumerate(size):
                _checks.positive_int(f"size[{i}]", side)
            height, width = int(size[0]), int(size[1])
        # a clean batch (made by sample()/mutate(), or checked here before, and not written since)
        # skips the check: a CUDA generation step then reads nothing back from the device
        if not is_clean(g, owner=self._owner):
            if not torch.isfinite(g.weight).all():
                raise InvalidArgumentError("genomes.weight must be finite, got NaN or inf")
            self._check_ids(g)  # checked before the Triton path: a user's bad ids never switch the kernel off
            self._check_fixed_nodes(g)  # a batch for another number of outputs would paint without a word
            # marked clean only within the weight range: the mark lets mutate() skip its range check
            if not len(g) or g.weight.abs().max() <= WEIGHT_LIMIT:
                mark_clean(g, owner=self._owner)
        grid = self._grid(height, width, g.device, g.weight.dtype)
        image = self._render_triton(grid, g) if self._uses_triton(g) else None
        if image is None:
            image = self._render_torch(grid, *self._ordered(g))
        return image.view(len(g), self.num_outputs, height, width)

    def _ordered(self, g: CPPNGenomes, *, all_slots: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every genome's weights gathered into evaluation order, once for the whole batch.

        Returns ``w`` (B, S + C, 4 + S): row ``s < S`` computes the genome's ``s``-th hidden
        node from the inputs and the hidden nodes before it, row ``S + c`` output ``c``;
        ``act`` (B, S + C) the activation ids of those rows; ``sizes`` (B,) hidden nodes per
        genome (rows past a genome's size are zero). S is the largest genome's hidden nodes, or
        with ``all_slots`` every hidden slot (a shape known without reading the device: no sync).
        """
        b, outs, fixed = len(g), self.num_outputs, self._first_hidden
        # hidden nodes of each genome sorted by key (free slots, key +inf, sort last): a topological order
        keys = torch.where(g.active[:, fixed:], g.order[:, fixed:], torch.full_like(g.order[:, fixed:], math.inf))
        sorted_keys, perm = keys.sort(dim=1, stable=True)
        finite = sorted_keys.abs() < math.inf  # isfinite in 2 kernels rather than 4 (launches count on a GPU)
        sizes = finite.sum(1)  # hidden nodes per genome
        steps = self.max_nodes - fixed if all_slots else (int(sizes.max()) if b else 0)
        hidden = perm[:, :steps] + fixed  # (B, S) node slots in evaluation order
        inputs = torch.arange(NUM_INPUTS, device=g.device).expand(b, -1)
        outputs = torch.arange(NUM_INPUTS, fixed, device=g.device).expand(b, -1)
        cols = torch.cat([inputs, hidden], 1)  # (B, R): the value rows, inputs first
        targets = torch.cat([hidden, outputs], 1)  # (B, S + C): the nodes computed, in order
        w = torch.gather(g.weight, 1, targets[:, :, None].expand(-1, -1, self.max_nodes))
        w = torch.gather(w, 2, cols[:, None, :].expand(-1, steps + outs, -1))  # (B, S + C, R)
        act = torch.gather(g.activation, 1, targets)  # (B, S + C)
        valid = torch.nn.functional.pad(finite[:, :steps], (0, outs), value=True)  # the output rows are always valid
        return w * valid[:, :, None], act, sizes  # padded steps contribute nothing

    def _render_torch(
        self, grid: torch.Tensor, w: torch.Tensor, act: torch.Tensor, sizes: torch.Tensor
    ) -> torch.Tensor:
        """The tensor path (the reference): chunks of genomes with similar sizes, few padded steps.

        The output nodes' product always runs over every node slot (the free ones weigh 0): its
        length, and so its rounding, depends on no other genome of the batch; each genome's rows of
        pixel values start on a 64-byte line, as a batch of one's do (the CPU's matrix product may
        round by alignment), so a genome's image is the same bit for bit alone, in any batch and at
        any ``render_budget``.
        """
        b, outs = w.shape[0], self.num_outputs
        steps = w.shape[1] - outs
        width = NUM_INPUTS + self.max_nodes - self._first_hidden  # inputs and every hidden slot
        pixels = grid.shape[1]
        if w.device.type == "cpu" and pixels >= _SPARSE_MIN_PIXELS and w.dtype in (torch.float32, torch.float64):
            return self._render_sparse(grid, w, act, sizes)
        align = max(1, _ALIGN_BYTES // grid.element_size())
        if pixels % align:
            # rows padded to whole 64-byte lines, so every genome's rows lie aligned as in a batch of one: a
            # CPU's matrix product may otherwise round a few elements apart by the batch (AMD EPYC, AVX2)
            grid = torch.nn.functional.pad(grid, (0, align - pixels % align))
        by_size = torch.argsort(sizes, stable=True)
        sizes_sorted = sizes[by_size].tolist()
        budget = self.render_budget if self.render_budget is not None else _default_budget(w.device)
        image = torch.empty(b, outs, grid.shape[1], device=w.device, dtype=w.dtype)
        lo = 0
        while lo < b:
            hi = lo + 1
            while hi < b and (hi + 1 - lo) * (NUM_INPUTS + sizes_sorted[hi]) * grid.shape[1] <= budget:
                hi += 1
            chunk_steps = sizes_sorted[hi - 1]
            idx = by_size[lo:hi]
            keep = torch.cat(
                [torch.arange(chunk_steps, device=w.device), torch.arange(steps, steps + outs, device=w.device)]
            )
            w_chunk = w[idx]
            w_hidden = w_chunk[:, :chunk_steps, : NUM_INPUTS + chunk_steps]
            w_out = torch.nn.functional.pad(
                w_chunk[:, steps:, : NUM_INPUTS + chunk_steps], (0, width - NUM_INPUTS - chunk_steps)
            )
            image[idx] = self._evaluate(grid, w_hidden, w_out, act[idx][:, keep], chunk_steps)
            lo = hi
        return image if image.shape[2] == pixels else image[:, :, :pixels].contiguous()

    def _render_sparse(
        self, grid: torch.Tensor, w: torch.Tensor, act: torch.Tensor, sizes: torch.Tensor
    ) -> torch.Tensor:
        """The CPU path for large images: one genome at a time, each node the weighted sum of its own inputs.

        The connections are read from the device once for the batch. A node's value row is its first
        weighted input row, plus each further one in evaluation order (``add`` with the weight as ``alpha``),
        then activated in place; a node without connections is 0 before its activation. Each genome is
        computed alone, in buffers of the same layout whatever the batch, so its image is the same bit
        for bit alone and in any batch. The sums round apart from the matrix product's (about 1e-6 per
        node), so images differ from the batched path by float rounding only.
        """
        b, outs = w.shape[0], self.num_outputs
        steps = w.shape[1] - outs
        pixels = grid.shape[1]
        image = torch.empty(b, outs, pixels, device=w.device, dtype=w.dtype)
        hidden = sizes.tolist()
        if not b:
            return image
        links = torch.nonzero(w).tolist()  # (genome, row, source), row-major: sources in evaluation order
        weights = w[w != 0].tolist()  # the same order
        terms: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for (i, r, j), x in zip(links, weights, strict=True):
            terms.setdefault((i, r), []).append((j, x))
        codes = act.tolist()
        functions = [ACTIVATIONS[name] for name in self.activations]
        values = torch.empty(NUM_INPUTS + max(hidden), pixels, device=w.device, dtype=w.dtype)
        values[:NUM_INPUTS] = grid  # the inputs' rows, shared by every genome; the hidden rows are rewritten
        for i in range(b):
            n = hidden[i]
            rows = [(r, values[NUM_INPUTS + r]) for r in range(n)] + [(steps + c, image[i, c]) for c in range(outs)]
            for r, target in rows:
                # only rows already computed for this genome, as the product reads them (a connection
                # from a later node or a free slot, which no valid genome has, counts for nothing)
                limit = NUM_INPUTS + min(r, n)
                sources = [(j, x) for j, x in terms.get((i, r), ()) if j < limit]
                if sources:
                    first, weight = sources[0]
                    torch.mul(values[first], weight, out=target)
                    for j, x in sources[1:]:
                        target.add_(values[j], alpha=x)
                else:
                    target.zero_()
                done = _in_place(functions[codes[i][r]], target)
                if done is not target:  # an activation without an in-place twin
                    target.copy_(done)
            image[i].clamp_(-1.0, 1.0).add_(1.0).mul_(0.5)
        return image

    def _uses_triton(self, g: CPPNGenomes) -> bool:
        if self.backend == "torch" or self._triton_failed:
            return False
        if self.backend == "triton":
            return True
        return g.device.type == "cuda" and _triton_available()

    def _render_triton(self, grid: torch.Tensor, g: CPPNGenomes) -> torch.Tensor | None:
        """The fused kernel's images, or None (after one warning) when Triton fails at run time."""
        try:
            w, act, sizes = self._ordered(g, all_slots=True)  # each program stops at its genome's size
            _cppn_triton = importlib.import_module("foolbench.encodings._cppn_triton")  # optional: on first use
            table = self._tables.get(str(act.device))
            if table is None:  # built once per device: a copy from the host inside a step would wait for it
                codes = [_cppn_triton.ACTIVATION_CODES[a] for a in self.activations]
                table = self._tables[str(act.device)] = torch.tensor(codes, device=act.device, dtype=torch.int32)
            image: torch.Tensor = _cppn_triton.render(grid, w, table[act], sizes, self.num_outputs)
            return image
        except Exception as exc:  # noqa: BLE001 - any kernel failure falls back to the reference path
            self._triton_failed = True
            warnings.warn(
                f"CPPNEncoding: the Triton render failed ({type(exc).__name__}: {exc}); "
                "this encoding uses the tensor path from now on",
                RuntimeWarning,
                stacklevel=3,
            )
            return None

    def _evaluate(
        self, grid: torch.Tensor, w: torch.Tensor, w_out: torch.Tensor, act: torch.Tensor, steps: int
    ) -> torch.Tensor:
        """Values of the output nodes for a chunk whose weights are in evaluation order.

        ``w`` (B, steps, R) are the hidden nodes' weights, ``w_out`` (B, C, W) the output nodes' over
        ``W >= R`` value rows (the rows past R are zero).
        """
        b, pixels = w.shape[0], grid.shape[1]
        values = torch.empty(b, w_out.shape[2], pixels, device=w.device, dtype=w.dtype)
        values[:, :NUM_INPUTS] = grid
        values[:, NUM_INPUTS + steps :].zero_()
        codes = act.T.tolist()  # read once per chunk: the activations each step uses
        for s in range(steps):
            k = NUM_INPUTS + s
            row = values[:, k : k + 1]
            if b == 1:  # the row is contiguous: the product lands in it and is activated there
                done = self._activate(
                    torch.bmm(w[:, s : s + 1, :k], values[:, :k], out=row), act[:, s : s + 1], codes[s]
                )
                if done is not row:  # an activation without an in-place twin
                    row.copy_(done)
            else:
                row.copy_(self._activate(torch.bmm(w[:, s : s + 1, :k], values[:, :k]), act[:, s : s + 1], codes[s]))
        out_codes = [col[i] for i in range(b) for col in codes[steps:]]  # row-major, as out's (B, C) rows
        out = self._activate(torch.bmm(w_out, values), act[:, steps:], out_codes)
        return out.clamp_(-1.0, 1.0).add_(1.0).mul_(0.5)

    def _activate(self, pre: torch.Tensor, act: torch.Tensor, codes: list[int]) -> torch.Tensor:
        """Each row of ``pre`` (B, K, P) through its own activation ``act`` (B, K).

        ``codes`` lists ``act``'s values row-major (``act.reshape(-1).tolist()``, read once by the caller).
        ``pre`` is the caller's and is activated in place (without gradients): each activation once over
        its own rows, a run of adjacent rows as a view (a one-genome chunk's outputs: one row each),
        scattered rows gathered and put back (``_GROUP_ROWS``).
        """
        present = sorted(set(codes))
        if len(present) == 1:
            return _in_place(ACTIVATIONS[self.activations[present[0]]], pre)
        if not _GROUP_ROWS or not pre.is_contiguous() or pre.requires_grad:
            return self._activate_pure(pre, act, present)
        # rather than every function over every row and a torch.where per function
        rows = pre.view(-1, pre.shape[-1])
        by_code: dict[int, list[int]] = {}
        for i, code in enumerate(codes):
            by_code.setdefault(code, []).append(i)
        for code, members in by_code.items():
            fn = ACTIVATIONS[self.activations[code]]
            first, last = members[0], members[-1]
            if last - first + 1 == len(members):  # adjacent rows: a view, activated where it lies
                run = rows[first : last + 1]
                done = _in_place(fn, run)
                if done is not run:  # an activation without an in-place twin
                    run.copy_(done)
            else:
                index = torch.tensor(members, device=pre.device)
                rows.index_copy_(0, index, _in_place(fn, rows.index_select(0, index)))
        return pre

    # ---------------------------------------------------- gradients (GradientPolish)
    #: The range connection weights are kept in (mutation clips them there too).
    gene_bounds = (-WEIGHT_LIMIT, WEIGHT_LIMIT)

    def _check_genes(self, g: CPPNGenomes, genes: Any) -> torch.Tensor:
        if not isinstance(genes, torch.Tensor) or not genes.is_floating_point():
            raise InvalidTypeError(f"genes must be a float tensor, got {type(genes).__name__}")
        if genes.shape != g.weight.shape:
            raise InvalidArgumentError(
                f"genes must have the genomes' weight shape {tuple(g.weight.shape)}, got {tuple(genes.shape)}"
            )
        return genes

    def genes(self, genomes: CPPNGenomes) -> torch.Tensor:
        """A copy of the connection weights: the genes a gradient moves (absent connections stay 0).

        Shape:
            - output: (B, N, N), ``weight``'s layout.
        """
        return self._check(genomes).weight.detach().clone()

    def render_genes(self, genomes: CPPNGenomes, genes: torch.Tensor) -> torch.Tensor:
        """Paint ``genomes`` with connection weights ``genes``, differentiably (autograd reaches ``genes``).

        The same network evaluation as :meth:`render`, written without in-place writes so autograd can
        follow it. Below 8,192 pixels they agree within float rounding (about 1e-6; bit for bit on a CPU).
        On a CPU at 8,192 pixels or more, where :meth:`render` sums each node's own connections, they round
        apart, and a deep network with large weights carries that further: at (3, 91, 91), on 160 genomes
        of 31-32 nodes (``add_node=add_connection=0.9``, ``init_weight=10``, 60 mutations) the largest
        difference per image was 6e-6 on the median, 1.2e-4 at the 90th percentile and 1.0e-2 at most (one
        pixel); on 160 genomes of the default settings, 2.0e-5 at most. Only existing connections take part, so
        ``genes`` at absent connections get no gradient. The final clip to the colour range passes
        gradients straight through: a saturated pixel (a linear output node's often are all of them)
        still tells its weights which way its class lies.

        Raises:
            InvalidTypeError: ``genes`` not a floating tensor.
            InvalidArgumentError: ``genes`` of another shape; (in a batch not made or checked by this
                encoding) an activation id out of range.

        Shape:
            - genes: (B, N, N), like ``genomes.weight``.
            - output: (B, C, H, W) in [0, 1].

        Examples:
            >>> import torch, foolbench as fb
            >>> enc = fb.encodings.CPPNEncoding((1, 8, 8))
            >>> g = enc.sample(2, torch.Generator().manual_seed(0))
            >>> genes = enc.genes(g).requires_grad_(True)
            >>> enc.render_genes(g, genes).sum().backward()
            >>> bool((genes.grad[~g.edge] == 0).all()), bool(genes.grad[g.edge].abs().sum() > 0)
            (True, True)
        """
        g = self._check(genomes)
        genes = self._check_genes(g, genes)
        if not is_clean(g, owner=self._owner):  # an id past the table would paint with another activation
            self._check_ids(g)
        height, width = self.image_shape[1:]
        # absent connections take no part, whatever their genes hold (NaN * 0 would be NaN)
        shaped = CPPNGenomes(
            torch.where(g.edge, genes, torch.zeros_like(genes)), g.edge, g.active, g.activation, g.order
        )
        w, act, _ = self._ordered(shaped)
        b, outs = len(g), self.num_outputs
        steps = w.shape[1] - outs
        grid = self._grid(height, width, g.device, genes.dtype)
        if b == 0:  # an empty batch (still a graph of genes for autograd)
            return genes.sum() * 0 + torch.zeros(0, outs, height, width, device=g.device, dtype=genes.dtype)
        present = sorted(set(act.flatten().tolist()))  # one read: only the activations this batch uses
        values = grid.expand(b, -1, -1)
        for s in range(steps):
            k = NUM_INPUTS + s
            row = self._activate_pure(torch.bmm(w[:, s : s + 1, :k], values), act[:, s : s + 1], present)
            values = torch.cat([values, row], 1)
        out = self._activate_pure(torch.bmm(w[:, steps:, : NUM_INPUTS + steps], values), act[:, steps:], present)
        out = out + (out.clamp(-1.0, 1.0) - out).detach()  # the clip's value, the identity's gradient
        return ((out + 1.0) * 0.5).view(b, outs, height, width)

    def _activate_pure(self, pre: torch.Tensor, act: torch.Tensor, present: list[int]) -> torch.Tensor:
        """Each row of ``pre`` through its activation, without in-place operations (autograd can follow it).

        ``present``: the sorted activation ids ``act`` holds.
        """
        out = ACTIVATIONS[self.activations[present[0]]](pre)
        for a in present[1:]:
            out = torch.where((act == a)[..., None], ACTIVATIONS[self.activations[a]](pre), out)
        return out

    def with_genes(self, genomes: CPPNGenomes, genes: torch.Tensor) -> CPPNGenomes:
        """A copy of ``genomes`` whose connections carry ``genes`` (clipped to [-10, 10]; absent ones stay 0).

        Raises:
            InvalidArgumentError: ``genes`` of another shape, or not finite; (in a batch not made or checked by
                this encoding) an activation id out of range.
        """
        g = self._check(genomes)
        genes = self._check_genes(g, genes).detach()
        clean = is_clean(g, owner=self._owner)
        if not clean:
            self._check_ids(g)
        if not torch.isfinite(genes[g.edge]).all():
            raise InvalidArgumentError("genes must be finite at every connection, got NaN or inf")
        low, high = self.gene_bounds
        weight = torch.where(g.edge, genes.to(g.weight.dtype).clamp(low, high), torch.zeros_like(g.weight))
        out = CPPNGenomes(weight, g.edge.clone(), g.active.clone(), g.activation.clone(), g.order.clone())
        # checked weights and ids stay checked
        return mark_clean(out, owner=self._owner) if clean else out

    # ------------------------------------------------------------ checkpoints
    def config(self) -> dict[str, Any]:
        """The genome space, and the mutation settings that differ from the defaults.

        Examples:
            >>> CPPNEncoding((1, 8, 8), eta=5.0).config()["eta"]
            5.0
        """
        config: dict[str, Any] = {
            "encoding": "cppn",
            "image_shape": list(self.image_shape),
            "max_nodes": self.max_nodes,
            "max_connections": self.max_connections,
            "activations": list(self.activations),
        }
        mutation = {**self.rates, "eta": self.eta, "init_weight": self.init_weight}
        return config | changed_settings(CPPNEncoding, mutation)

    def genomes_to_state(self, genomes: CPPNGenomes) -> dict[str, torch.Tensor]:
        return self._check(genomes).as_dict()

    def genomes_from_state(self, state: dict[str, torch.Tensor]) -> CPPNGenomes:
        names = CPPNGenomes.fields
        missing = [k for k in names if not isinstance(state.get(k), torch.Tensor)]
        if missing:
            raise CheckpointError(f"stored genomes do not fit {self!r}: missing tensors {missing}")
        genomes = CPPNGenomes(*(state[k] for k in names))
        try:
            self.validate(genomes)
        except InvalidArgumentError as exc:
            raise CheckpointError(f"stored genomes do not fit {self!r}: {exc}") from None
        return genomes
