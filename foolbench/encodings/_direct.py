"""Direct encoding: the genome is the image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from foolbench import _checks
from foolbench.encodings._base import changed_settings
from foolbench.errors import CheckpointError, InvalidArgumentError, InvalidTypeError

__all__ = ["DirectEncoding", "polynomial_mutation"]


def polynomial_mutation(x: torch.Tensor, u: torch.Tensor, eta: float) -> torch.Tensor:
    """Bounded polynomial mutation (Deb & Goyal 1996) of values in [0, 1].

    Each value moves by a random amount whose spread shrinks as ``eta`` grows;
    the bounded form never leaves [0, 1], so no clipping piles values on the bounds.

    Args:
        x: values in [0, 1].
        u: uniform random numbers in [0, 1), same shape as ``x``.
        eta: distribution index (the paper's "strength", 15): larger means smaller steps.

    Shape:
        - x, u, output: any shape, all the same.

    Examples:
        >>> import torch
        >>> y = polynomial_mutation(torch.full((1000,), 0.5), torch.rand(1000), 15.0)
        >>> bool((y >= 0).all() and (y <= 1).all())
        True
    """
    p = 1.0 / (eta + 1.0)
    low = u < 0.5
    d1 = (1.0 - x).pow(eta + 1.0)  # (1 - (x - lb)) ** (eta + 1)
    d2 = x.pow(eta + 1.0)  # (1 - (ub - x)) ** (eta + 1)
    lower = (2.0 * u + (1.0 - 2.0 * u) * d1).pow(p) - 1.0
    upper = 1.0 - (2.0 * (1.0 - u) + 2.0 * (u - 0.5) * d2).pow(p)
    return (x + torch.where(low, lower, upper)).clamp_(0.0, 1.0)


class DirectEncoding:
    """Genomes are images: one gene per pixel and channel, values in [0, 1].

    Initial genomes are uniform random noise. Mutation draws ``mutation_rate`` times
    as many positions as the batch has genes, uniformly and with replacement, and applies
    bounded polynomial mutation with distribution index ``eta`` at each; since a gene may
    be drawn more than once, the share of genes mutated is ``1 - exp(-mutation_rate)``
    (0.095 at 0.1, 0.63 at 1), a little less than the rate. A schedule (the rate decay of
    Nguyen et al. 2015) belongs to the search, which passes ``strength`` to :meth:`mutate`.

    Args:
        image_shape: (C, H, W) of the images.
        mutation_rate: positions drawn per generation, as a share of the batch's genes, in (0, 1];
            drawn with replacement, so about ``1 - exp(-mutation_rate)`` of the genes change.
        eta: polynomial mutation distribution index (> 0; the paper's 15).

    Raises:
        InvalidArgumentError: bad shape or rates.

    Shape:
        - genomes: (B, C, H, W) float tensors in [0, 1]; ``render`` returns them as they are.

    Examples:
        >>> import torch
        >>> enc = DirectEncoding((1, 28, 28))
        >>> g = enc.sample(4, torch.Generator().manual_seed(0))
        >>> enc.render(enc.mutate(g, torch.Generator().manual_seed(1))).shape
        torch.Size([4, 1, 28, 28])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        mutation_rate: float = 0.1,
        eta: float = 15.0,
    ) -> None:
        self.image_shape = _checks.shape3("image_shape", image_shape)
        self.mutation_rate = _checks.real("mutation_rate", mutation_rate, low=0.0, high=1.0, low_open=True)
        self.eta = _checks.real("eta", eta, low=0.0, low_open=True)

    def __repr__(self) -> str:
        return f"DirectEncoding(image_shape={self.image_shape}, mutation_rate={self.mutation_rate:g}, eta={self.eta:g})"

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` uniform-noise genomes, (n, C, H, W), on the generator's device.

        Raises:
            InvalidTypeError: ``generator`` not a :class:`torch.Generator`.
        """
        _checks.positive_int("n", n)
        generator = _checks.torch_generator("generator", generator)
        return torch.rand((n, *self.image_shape), generator=generator, device=generator.device)

    def _check(self, genomes: Any, name: str = "genomes") -> torch.Tensor:
        if not isinstance(genomes, torch.Tensor) or not genomes.is_floating_point():
            raise InvalidTypeError(
                f"{name} must be a floating tensor of shape (B, {', '.join(map(str, self.image_shape))}), "
                f"got {type(genomes).__name__}"
            )
        if genomes.dim() != 4 or tuple(genomes.shape[1:]) != self.image_shape:
            raise InvalidArgumentError(
                f"{name} must have shape (B, {', '.join(map(str, self.image_shape))}), got {tuple(genomes.shape)}"
            )
        return genomes

    def validate(self, genomes: torch.Tensor) -> None:
        """Check a batch: a floating (B, C, H, W) tensor of this shape with values in [0, 1].

        Raises:
            InvalidTypeError: not a floating tensor.
            InvalidArgumentError: another shape, or a value outside [0, 1] (NaN included).

        Examples:
            >>> DirectEncoding((1, 2, 2)).validate(torch.full((1, 1, 2, 2), 2.0))
            Traceback (most recent call last):
            ...
            foolbench.errors.InvalidArgumentError: genomes must hold values in [0, 1], got values in [2, 2]
        """
        g = self._check(genomes)
        if not bool(((g >= 0) & (g <= 1)).all()):
            if bool(g.isnan().any()):
                raise InvalidArgumentError("genomes must hold values in [0, 1], got NaN")
            lo, hi = torch.aminmax(g)
            raise InvalidArgumentError(
                f"genomes must hold values in [0, 1], got values in [{float(lo):g}, {float(hi):g}]"
            )

    def mutate(self, genomes: torch.Tensor, generator: torch.Generator, *, strength: float = 1.0) -> torch.Tensor:
        """Mutated copies of ``genomes``; the input is not modified.

        Args:
            genomes: a batch of images in [0, 1]; a value outside is clipped into it first (polynomial mutation
                of a value past a bound is NaN), a NaN stays NaN.
            generator: the source of every random draw.
            strength: multiplies the rate: ``max(1, round(min(1, mutation_rate * strength) * genes))``
                positions of the batch are drawn (with replacement, so about ``1 - exp(-rate)`` of the genes
                change; a gene drawn twice takes its last draw) and mutated. 1 is the encoding's own rate; the
                search's schedule lowers it over time.

        Returns:
            The mutated batch, same dtype and device, in [0, 1].

        Raises:
            InvalidArgumentError: ``strength`` not a finite number > 0; genomes of the wrong shape.
            InvalidTypeError: ``generator`` not a :class:`torch.Generator`.

        Shape:
            - genomes, output: (B, C, H, W)
        """
        strength = _checks.real("strength", strength, low=0.0, low_open=True)
        parents = self._check(genomes)
        generator = _checks.torch_generator("generator", generator)
        # clipped rather than refused: a range check would read the batch back from the device every generation
        child = parents.clone(memory_format=torch.contiguous_format).clamp_(0.0, 1.0)
        if not len(child):  # an empty batch has nothing to mutate (and draws nothing)
            return child
        flat = child.view(-1)
        k = max(1, round(min(1.0, self.mutation_rate * strength) * flat.numel()))
        pos = torch.randint(0, flat.numel(), (k,), generator=generator, device=generator.device).to(flat.device)
        u = torch.rand(k, generator=generator, device=generator.device).to(flat)
        # A gene drawn twice takes its last draw. Written as an order-independent scatter (the winning
        # draw adds its change, the others add zero), so the result never depends on how threads or
        # CUDA blocks order duplicate writes, and nothing is read back to the host.
        draw = torch.arange(k, device=flat.device)
        owner = torch.full_like(flat, -1, dtype=torch.long).scatter_reduce_(0, pos, draw, reduce="amax")
        old = flat[pos]
        change = torch.where(owner[pos] == draw, polynomial_mutation(old, u, self.eta) - old, 0.0)
        flat.index_put_((pos,), change, accumulate=True)
        flat[pos] = flat[pos].clamp(0.0, 1.0)  # old + (new - old) may round one step past a bound
        return child

    def crossover(
        self, genomes: torch.Tensor, mates: torch.Tensor, generator: torch.Generator, *, probability: float = 1.0
    ) -> torch.Tensor:
        """Uniform crossover: with ``probability`` per child, each gene comes from the mate with chance 1/2.

        Args:
            genomes: first parents.
            mates: second parents, same shape.
            generator: the source of every random draw.
            probability: share of the children that are crossed, in [0, 1]; the others are copies.

        Returns:
            A new batch (the inputs are not modified).

        Raises:
            InvalidArgumentError: shapes that differ or do not fit, or ``probability`` outside [0, 1].
            InvalidTypeError: ``genomes`` or ``mates`` not a floating tensor, ``generator`` not a
                :class:`torch.Generator`.

        Shape:
            - genomes, mates, output: (B, C, H, W)

        Examples:
            >>> import torch
            >>> enc = DirectEncoding((1, 4, 4))
            >>> a, b = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
            >>> child = enc.crossover(a, b, torch.Generator().manual_seed(0))
            >>> bool(((child == 0) | (child == 1)).all()), 0 < float(child.mean()) < 1
            (True, True)
        """
        probability = _checks.real("probability", probability, low=0.0, high=1.0)
        a, b = self._check(genomes), self._check(mates, "mates")
        generator = _checks.torch_generator("generator", generator)
        if a.shape != b.shape:
            raise InvalidArgumentError(f"mates must have the shape of genomes {tuple(a.shape)}, got {tuple(b.shape)}")
        do = torch.rand(a.shape[0], generator=generator, device=generator.device).to(a.device) < probability
        u = torch.rand(a.shape, generator=generator, device=generator.device).to(a.device)
        return torch.where((u < 0.5) & do.view(-1, 1, 1, 1), b.to(a), a)

    def render(self, genomes: torch.Tensor) -> torch.Tensor:
        """The images themselves (direct encoding), (B, C, H, W) in [0, 1]."""
        return self._check(genomes)

    #: The range every gene (pixel) is kept in.
    gene_bounds = (0.0, 1.0)

    def genes(self, genomes: torch.Tensor) -> torch.Tensor:
        """A copy of the pixels: the genes a gradient moves, (B, C, H, W)."""
        return self._check(genomes).detach().clone()

    def _check_genes(self, g: torch.Tensor, genes: Any) -> torch.Tensor:
        if not isinstance(genes, torch.Tensor) or not genes.is_floating_point():
            got = f"dtype {genes.dtype}" if isinstance(genes, torch.Tensor) else type(genes).__name__
            raise InvalidTypeError(f"genes must be a float tensor of shape {tuple(g.shape)}, got {got}")
        if genes.shape != g.shape:
            raise InvalidArgumentError(f"genes must have the genomes' shape {tuple(g.shape)}, got {tuple(genes.shape)}")
        return genes

    def render_genes(self, genomes: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
        """The image ``genes`` paint (the pixels themselves, clipped to [0, 1]; autograd reaches ``genes``).

        Raises:
            InvalidTypeError: ``genes`` not a floating tensor.
            InvalidArgumentError: ``genes`` of another shape than ``genomes``.
        """
        return self._check_genes(self._check(genomes), genes).clamp(0.0, 1.0)

    def with_genes(self, genomes: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
        """The genomes ``genes`` stand for, clipped to [0, 1].

        Raises:
            InvalidTypeError: ``genes`` not a floating tensor.
            InvalidArgumentError: ``genes`` of another shape than ``genomes``, or not finite (NaN or inf).
        """
        g = self._check(genomes)
        genes = self._check_genes(g, genes).detach()
        if not torch.isfinite(genes).all():  # before the clip, which would turn inf into a bound
            raise InvalidArgumentError("genes must be finite, got NaN or inf")
        return genes.clamp(0.0, 1.0).to(g.dtype)

    def config(self) -> dict[str, Any]:
        """The genome space, and the mutation settings that differ from the defaults.

        Examples:
            >>> DirectEncoding((1, 8, 8), mutation_rate=0.5).config()
            {'encoding': 'direct', 'image_shape': [1, 8, 8], 'mutation_rate': 0.5}
        """
        config: dict[str, Any] = {"encoding": "direct", "image_shape": list(self.image_shape)}
        return config | changed_settings(DirectEncoding, {"mutation_rate": self.mutation_rate, "eta": self.eta})

    def genomes_to_state(self, genomes: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pixels": self._check(genomes)}

    def genomes_from_state(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        pixels = state.get("pixels")
        if not isinstance(pixels, torch.Tensor) or pixels.dim() != 4 or tuple(pixels.shape[1:]) != self.image_shape:
            got = tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
            raise CheckpointError(
                f"stored genomes do not fit {self!r}: expected pixels of shape "
                f"(B, {', '.join(map(str, self.image_shape))}), got {got}"
            )
        return pixels
