"""The Encoding protocol: how a genome becomes an image."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["Encoding", "Genomes"]

# A batch of genomes: a tensor for direct encodings, or any object that supports
# ``len(g)``, ``g[index_tensor]`` (a sub-batch) and ``g[index_tensor] = other`` (in place).
Genomes = Any


@runtime_checkable
class Encoding(Protocol):
    """Maps genomes to images; all operations work on whole batches.

    Attributes:
        image_shape: (C, H, W) of a rendered image.

    Examples:
        >>> import foolbench as fb
        >>> isinstance(fb.encodings.CPPNEncoding((1, 8, 8)), Encoding)
        True
    """

    image_shape: tuple[int, int, int]

    def sample(self, n: int, generator: torch.Generator) -> Genomes:
        """``n`` random initial genomes on the generator's device."""
        ...

    def mutate(self, genomes: Genomes, generator: torch.Generator, *, strength: float = 1.0) -> Genomes:
        """Mutated copies of ``genomes`` (the input is left unchanged)."""
        ...

    def render(self, genomes: Genomes) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1]; one tensor program for the whole batch."""
        ...

    def config(self) -> dict[str, Any]:
        """The settings that define the genome space (used to validate checkpoints)."""
        ...

    def genomes_to_state(self, genomes: Genomes) -> dict[str, torch.Tensor]:
        """Tensors that hold ``genomes`` (for checkpoints loaded with ``weights_only=True``)."""
        ...

    def genomes_from_state(self, state: dict[str, torch.Tensor]) -> Genomes:
        """Inverse of :meth:`genomes_to_state`; raises on tensors from another configuration."""
        ...
