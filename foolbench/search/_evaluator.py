"""Evaluators: how a search turns genomes into scores, wherever the model runs."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from foolbench import _checkpoint
from foolbench.encodings import Encoding, Genomes
from foolbench.errors import FoolbenchError, InvalidArgumentError, InvalidTypeError
from foolbench.models import Classifier, check_classifier
from foolbench.models._classifier import architecture_digest

__all__ = ["Evaluator", "LocalEvaluator", "render_in_bounds"]


@runtime_checkable
class Evaluator(Protocol):
    """Scores a batch of genomes: the one seam between a search and the model.

    A search never calls the classifier itself: it asks its evaluator for the
    log-probabilities of the genomes it proposed. :class:`LocalEvaluator` renders
    and scores in this process (the default); an evaluator may as well send the
    genomes to other processes, GPUs or machines (see ``foolbench.distributed``),
    as long as equal genomes get equal scores.

    Shape:
        - genomes: a batch of B genomes.
        - columns: (M,) int64 class indices, or None for all K classes.
        - output: (B, M) or (B, K) float log-probabilities, any device.

    Examples:
        >>> import torch, foolbench as fb
        >>> class Constant:
        ...     def __call__(self, genomes, *, columns=None):
        ...         k = 10 if columns is None else len(columns)
        ...         return torch.full((len(genomes), k), -2.302585)
        >>> isinstance(Constant(), fb.search.Evaluator)
        True
    """

    def __call__(self, genomes: Genomes, *, columns: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K) log-probabilities of the genomes' images, or (B, M) for the given ``columns``."""
        ...


def render_in_bounds(encoding: Encoding, genomes: Genomes, bounds: tuple[float, float]) -> torch.Tensor:
    """Render ``genomes`` and map the images from [0, 1] into the classifier's raw range ``bounds``.

    Shape:
        - output: (B, C, H, W) in ``bounds``.

    Examples:
        >>> import torch, foolbench as fb
        >>> enc = fb.encodings.DirectEncoding((1, 2, 2))
        >>> render_in_bounds(enc, torch.ones(1, 1, 2, 2), (0.0, 255.0)).max().item()
        255.0
    """
    return in_bounds(encoding.render(genomes), bounds)


def in_bounds(images: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """Map images from [0, 1] into ``bounds`` (autograd follows; unit bounds return ``images`` itself)."""
    lower, upper = bounds
    return images if (lower, upper) == (0.0, 1.0) else lower + (upper - lower) * images


class LocalEvaluator:
    """Render genomes and score them with a classifier in this process.

    Genomes are moved to the classifier's device before rendering (a CPPN genome
    is far smaller than its image), and the scores come back on that device.

    Args:
        classifier: the model that scores the images.
        encoding: turns genomes into images in [0, 1]; mapped to the classifier's ``bounds``.
        checked: check the images' values before the model sees them (a read back to the host); None
            (default): on CPU only, since a CUDA step must not wait for the device.

    Raises:
        InvalidTypeError: ``classifier`` or ``encoding`` does not follow its protocol; ``checked`` not a bool.
        InvalidArgumentError: the encoding's image shape differs from the classifier's input shape.

    Shape:
        - genomes: a batch of B genomes.
        - output: (B, K) log-probabilities, or (B, M) for ``columns`` of length M.

    Examples:
        >>> import torch, foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> enc = fb.encodings.DirectEncoding((1, 28, 28))
        >>> ev = fb.search.LocalEvaluator(clf, enc)
        >>> g = enc.sample(4, torch.Generator().manual_seed(0))
        >>> ev(g).shape, ev(g, columns=torch.tensor([3, 5])).shape
        (torch.Size([4, 10]), torch.Size([4, 2]))
    """

    def __init__(self, classifier: Classifier, encoding: Encoding, *, checked: bool | None = None) -> None:
        if checked is not None and not isinstance(checked, bool):
            raise InvalidTypeError(f"checked must be True, False or None, got {type(checked).__name__}")
        self.checked = checked
        self.classifier = check_classifier(classifier)
        check_encoding(encoding)
        check_shapes(encoding, self.classifier)
        self.encoding = encoding

    def __repr__(self) -> str:
        return f"LocalEvaluator(classifier={type(self.classifier).__name__}, encoding={self.encoding!r})"

    def images(self, genomes: Genomes) -> torch.Tensor:
        """Render genomes into the classifier's raw input range, on the classifier's device."""
        device = torch.device(self.classifier.device)
        moved = genomes.to(device) if _device_of(genomes) != device else genomes
        return render_in_bounds(self.encoding, moved, _bounds(self.classifier))

    def __call__(self, genomes: Genomes, *, columns: torch.Tensor | None = None) -> torch.Tensor:
        # On CUDA the rendered images are in bounds by construction: skip the checks that read values
        # back (a NaN score then simply never enters the archive).
        checked = self.checked if self.checked is not None else torch.device(self.classifier.device).type != "cuda"
        if columns is not None:
            _check_columns(columns, self.classifier.num_classes, read=checked)
        log_probs = self.classifier.log_probs(self.images(genomes), checked=checked)
        return log_probs if columns is None else log_probs.index_select(1, columns.to(log_probs.device))


def _check_columns(columns: Any, num_classes: int, *, read: bool) -> None:
    """Refuse ``columns`` that are not a 1-D integer tensor of class indices (values read only where ``read``)."""
    if (
        not isinstance(columns, torch.Tensor)
        or columns.dim() != 1
        or columns.is_floating_point()
        or columns.is_complex()
    ):
        got = (
            f"{columns.dtype} tensor of shape {tuple(columns.shape)}"
            if isinstance(columns, torch.Tensor)
            else (type(columns).__name__)
        )
        raise InvalidArgumentError(f"columns must be a 1-D integer tensor of class indices, got {got}")
    if columns.dtype not in (torch.int32, torch.int64):  # what index_select takes
        raise InvalidArgumentError(f"columns must be a 1-D int64 or int32 tensor of class indices, got {columns.dtype}")
    if read and columns.numel():
        lo, hi = int(columns.min()), int(columns.max())
        if lo < 0 or hi >= num_classes:
            raise InvalidArgumentError(
                f"columns must hold class indices in [0, {num_classes - 1}], got values in [{lo}, {hi}]"
            )


_SCORED = ("image_shape", "sample", "mutate", "render")  # what an evaluator calls
_SEARCHED = (*_SCORED, "config", "genomes_to_state", "genomes_from_state")  # and a search's result and checkpoints


def check_encoding(encoding: object, *, search: bool = False) -> None:
    """Raise :class:`InvalidTypeError` unless ``encoding`` has the Encoding members its user calls.

    An evaluator renders and scores; a search (``search=True``) also reports its settings (``config``) and
    saves and loads genomes (``genomes_to_state``, ``genomes_from_state``) in its result and checkpoints,
    so it checks those before it spends its budget.
    """
    for attr in _SEARCHED if search else _SCORED:
        if not hasattr(encoding, attr):
            raise InvalidTypeError(f"encoding must follow foolbench.encodings.Encoding (missing {attr!r})")


def check_shapes(encoding: Encoding, classifier: Classifier) -> None:
    """Raise :class:`InvalidArgumentError` when the encoding paints images the classifier cannot take."""
    if tuple(encoding.image_shape) != tuple(classifier.input_shape):
        raise InvalidArgumentError(
            f"encoding.image_shape {tuple(encoding.image_shape)} must equal the "
            f"classifier's input_shape {tuple(classifier.input_shape)}"
        )


def _bounds(classifier: Classifier) -> tuple[float, float]:
    lower, upper = classifier.bounds
    return float(lower), float(upper)


def _device_of(genomes: Genomes) -> torch.device:
    device = getattr(genomes, "device", None)
    return device if isinstance(device, torch.device) else torch.device("cpu")


def encoding_digest(encoding: Any) -> str | None:
    """A short digest of ``encoding.config()`` (None for an encoding without one).

    Examples:
        >>> import foolbench as fb
        >>> a, b = fb.encodings.DirectEncoding((1, 4, 4)), fb.encodings.DirectEncoding((1, 4, 4), eta=5.0)
        >>> encoding_digest(a) == encoding_digest(fb.encodings.DirectEncoding((1, 4, 4))) != encoding_digest(b)
        True
    """
    config = getattr(encoding, "config", None)
    return _checkpoint.digest(config())[:16] if callable(config) else None


def identity_digests(classifier: Any, encoding: Any) -> tuple[str | None, str | None, str | None]:
    """The scoring, architecture and encoding digests of a classifier and encoding, as a search keeps them.

    The scoring digest is that of :meth:`~foolbench.models.BaseClassifier.identity` (preprocessing, a
    defense), the architecture's that of :func:`~foolbench.models._classifier.architecture_digest`; either
    is None for an object the classifier checks refuse.
    """
    try:
        checked = check_classifier(classifier)
    except FoolbenchError:
        return None, None, encoding_digest(encoding)
    return (
        _checkpoint.digest(checked.identity())[:16],
        architecture_digest(checked),
        encoding_digest(encoding),
    )
