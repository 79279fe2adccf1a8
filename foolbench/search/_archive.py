"""An archive of elites with one niche per target class, held as a struct of tensors."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import torch

from foolbench import _checkpoint
from foolbench.encodings import Encoding, Genomes
from foolbench.encodings._base import select_rows
from foolbench.errors import CheckpointError, InvalidArgumentError

__all__ = ["AddStatus", "ClassArchive"]


class AddStatus(IntEnum):
    """What :meth:`ClassArchive.add` did to a niche.

    Examples:
        >>> int(AddStatus.NEW), int(AddStatus.IMPROVED)
        (2, 1)
    """

    NOT_ADDED = 0
    IMPROVED = 1
    NEW = 2


class ClassArchive:
    """One elite per target class: the genome the classifier is most confident belongs to it.

    Every evaluated child competes for every niche at once: the batch's scores for
    the archive's classes form a (B, M) matrix whose column-wise max is the
    scatter-max of the children into the niches, so :meth:`add` has no Python loop
    over children.

    Args:
        classes: (M,) target class of each niche.
        encoding: how genomes are stored and checkpointed.
        sync_free: insert without reading anything back to the host (a masked select over all
            niches); None (default): off the CPU only, where copying just the improved niches is cheaper.

    Attributes:
        classes: (M,) int64 target classes.
        fitness: (M,) float32 log-probability of the elite's class (-inf while empty).
        occupied: (M,) bool.
        found_at: (M,) int64 evaluation count when each elite was inserted.
        genomes: the (M,) batch of elites (None before the first :meth:`add`).

    Examples:
        >>> import torch
        >>> from foolbench.encodings import DirectEncoding
        >>> arc = ClassArchive(torch.tensor([0, 1]), DirectEncoding((1, 2, 2)))
        >>> g = torch.rand(3, 1, 2, 2)
        >>> lp = torch.log_softmax(torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), 1)
        >>> arc.add(g, lp, evaluations=3).tolist()  # both niches new
        [2, 2]
        >>> torch.equal(arc.genomes[0], g[2])
        True
    """

    def __init__(self, classes: torch.Tensor, encoding: Encoding, *, sync_free: bool | None = None) -> None:
        if classes.dim() != 1 or classes.numel() == 0:
            raise InvalidArgumentError(f"classes must be a non-empty 1-D tensor, got shape {tuple(classes.shape)}")
        self.encoding = encoding
        self.classes = classes.long()
        m = classes.shape[0]
        self.fitness = torch.full((m,), -torch.inf, device=classes.device)
        self.occupied = torch.zeros(m, dtype=torch.bool, device=classes.device)
        self.found_at = torch.zeros(m, dtype=torch.long, device=classes.device)
        self.genomes: Genomes | None = None
        self.sync_free = classes.device.type != "cpu" if sync_free is None else bool(sync_free)

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    def __repr__(self) -> str:
        return f"ClassArchive(niches={len(self)}, occupied={int(self.occupied.sum())})"

    def add(self, genomes: Genomes, log_probs: torch.Tensor, *, evaluations: int) -> torch.Tensor:
        """Insert a batch: each niche keeps the best of its elite and all children.

        Args:
            genomes: (B,) batch of genomes.
            log_probs: (B, K) log-probabilities the classifier gave their images.
            evaluations: the evaluation count to record for new elites.

        Returns:
            (M,) int64 :class:`AddStatus` per niche.

        Shape:
            - log_probs: (B, K)
            - output: (M,)
        """
        return self.add_scores(
            genomes, log_probs.index_select(1, self.classes.to(log_probs.device)), evaluations=evaluations
        )

    def add_scores(self, genomes: Genomes, scores: torch.Tensor, *, evaluations: int) -> torch.Tensor:
        """Like :meth:`add` with the (B, M) scores of the archive's classes only.

        With ``sync_free`` (the default off the CPU) the update reads nothing back
        to the host (a masked select over all niches); otherwise only the improved
        niches are copied.

        Shape:
            - scores: (B, M)
            - output: (M,)
        """
        scores = scores.to(self.fitness.device)
        # a NaN would win max() and block every other child of the batch from its niche: it ranks last instead
        scores = torch.where(scores.isnan(), -torch.inf, scores)
        best, arg = scores.max(dim=0)
        improved = best > self.fitness
        status = torch.where(
            improved, torch.where(self.occupied, AddStatus.IMPROVED, AddStatus.NEW), AddStatus.NOT_ADDED
        )
        if self.genomes is None:
            self.genomes = genomes[arg.to(_device_of(genomes))]
        elif self.sync_free:
            self.genomes = select_rows(improved, genomes[arg], self.genomes)
        else:
            idx = torch.nonzero(improved).flatten()
            if idx.numel():
                self.genomes[idx.to(_device_of(self.genomes))] = genomes[arg[idx].to(_device_of(genomes))]
        self.fitness = torch.where(improved, best.to(self.fitness.dtype), self.fitness)
        self.found_at = torch.where(improved, torch.full_like(self.found_at, evaluations), self.found_at)
        self.occupied |= improved
        return status.long()

    def confidence(self) -> torch.Tensor:
        """(M,) float64 probabilities of the elites (0 where empty), on the CPU (MPS has no float64)."""
        return self.fitness.cpu().double().exp()

    def state_dict(self) -> dict[str, Any]:
        # copies, also on the CPU (where .cpu() would hand out the archive's own tensors, which a search
        # updates in place): a state dict is a snapshot, whatever the device
        state: dict[str, Any] = {
            "classes": _checkpoint.snapshot(self.classes),
            "fitness": _checkpoint.snapshot(self.fitness),
            "occupied": _checkpoint.snapshot(self.occupied),
            "found_at": _checkpoint.snapshot(self.found_at),
        }
        if self.genomes is not None:
            state["genomes"] = {
                k: _checkpoint.snapshot(v) for k, v in self.encoding.genomes_to_state(self.genomes).items()
            }
        return state

    def load_state_dict(self, state: dict[str, Any], *, source: str = "archive state") -> None:
        """Restore :meth:`state_dict`, checking every field (dtype, shape, range, finiteness).

        Raises:
            CheckpointError: a field is missing, of the wrong type or shape, or out of range.
        """
        m = len(self)
        classes = _checkpoint.field(state, "classes", source=source, shape=(m,), dtype=torch.long)
        if not torch.equal(classes, self.classes.cpu()):
            raise CheckpointError(f"{source!r} archive classes {classes.tolist()} differ from {self.classes.tolist()}")
        fitness = _checkpoint.field(state, "fitness", source=source, shape=(m,), dtype=torch.float32, high=0.0)
        occupied = _checkpoint.field(state, "occupied", source=source, shape=(m,), dtype=torch.bool)
        found_at = _checkpoint.field(state, "found_at", source=source, shape=(m,), dtype=torch.long, low=0)
        if bool((occupied != torch.isfinite(fitness)).any()):
            raise CheckpointError(f"{source!r} archive fitness must be finite exactly where a niche is occupied")
        genomes = state.get("genomes")
        device = self.fitness.device
        loaded = None
        if genomes is not None or bool(occupied.any()):
            loaded = _checkpoint.genomes(self.encoding, genomes, device=device, count=m, source=source)
        # copies: two searches loaded from one state must not update each other's archive
        self.fitness = fitness.to(device, copy=True)
        self.occupied = occupied.to(device, copy=True)
        self.found_at = found_at.to(device, copy=True)
        self.genomes = loaded


def _device_of(genomes: Genomes) -> torch.device:
    device = getattr(genomes, "device", None)
    return device if isinstance(device, torch.device) else torch.device("cpu")
