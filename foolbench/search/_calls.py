"""Model calls inside attack loops, progress bars and batch streams (private).

The step loops of the attacks call :func:`logits` instead of ``classifier(x)``:
for a :class:`~foolbench.models.BaseClassifier` whose ``forward`` is the base
one it skips the per-call value check of the inputs (a min/max read back to the
host), which the loops do not need because every point they evaluate is clamped
inside the bounds by construction. The model's output is checked without a host
synchronisation: its dtype at once, its finiteness through a :class:`FiniteGuard`
that reads one flag back when asked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import torch

from foolbench.errors import InvalidArgumentError, InvalidTypeError, ModelOutputError
from foolbench.models import BaseClassifier, Classifier

__all__ = ["FiniteGuard", "batches", "gradients", "logits", "progress_bar", "usable"]

_T = TypeVar("_T")


@contextlib.contextmanager
def gradients(what: str) -> Iterator[None]:
    """Autograd on inside the block, even under the caller's ``torch.no_grad()`` or ``torch.inference_mode()``.

    Gradient attacks differentiate the model with respect to its inputs, which neither context allows.
    Tensors the caller made under inference mode go through :func:`usable` inside the block. A model
    whose own tensors were made under inference mode (built or loaded there) cannot be differentiated:
    autograd's error is then re-raised naming ``what`` and inference_mode.

    Raises:
        InvalidArgumentError: the model holds inference-mode tensors.

    Examples:
        >>> import torch
        >>> with torch.no_grad(), gradients("PGD"):
        ...     torch.is_grad_enabled()
        True
    """
    with torch.inference_mode(False), torch.enable_grad():
        try:
            yield
        except RuntimeError as err:
            # torch's words: "Inference tensors cannot be saved for backward", "... on inference tensor ..."
            if "inference tensor" not in str(err).lower():
                raise
            raise InvalidArgumentError(
                f"{what} differentiates the model, but the model holds tensors made under torch.inference_mode() "
                "(it was built or loaded there), which autograd refuses: build or load it outside inference_mode "
                f"(calling {what} itself under torch.inference_mode() or torch.no_grad() is fine)"
            ) from err


def usable(t: _T) -> _T:
    """``t``, or a normal copy of it where it is an inference-mode tensor (call inside :func:`gradients`)."""
    if isinstance(t, torch.Tensor) and t.is_inference():
        return t.clone()  # type: ignore[return-value]
    return t


def logits(clf: Classifier, x: torch.Tensor) -> torch.Tensor:
    """Differentiable logits of ``x`` (inside the bounds by construction), with no host synchronisation.

    Raises:
        ModelOutputError: the model returned something other than a floating (B, K) tensor.
    """
    if isinstance(clf, BaseClassifier) and type(clf).forward is BaseClassifier.forward:
        out = clf.logits(x.to(dtype=clf.dtype))
    else:
        out = clf(x)
    if not isinstance(out, torch.Tensor) or out.shape != (x.shape[0], clf.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelOutputError(
            f"the model must return logits of shape (B, num_classes) = ({x.shape[0]}, {clf.num_classes}), got {got}"
        )
    if not out.is_floating_point():
        raise ModelOutputError(
            f"the model must return floating logits (e.g. torch.float32), got dtype {out.dtype}: "
            "integer outputs have no gradient and no probabilities; return the raw scores of the last layer"
        )
    return out


class FiniteGuard:
    """Remembers, on the device, whether any model output was NaN or infinite; :meth:`check` reads it once.

    Examples:
        >>> import torch
        >>> guard = FiniteGuard("PGD")
        >>> guard.update(torch.tensor([[1.0, float("nan")]]))
        >>> guard.check()
        Traceback (most recent call last):
        ...
        foolbench.errors.ModelOutputError: the model returned NaN or infinite logits during PGD for finite inputs inside the bounds; the model's output is the problem, not the images (check its weights and numerics)
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._bad: torch.Tensor | None = None

    def update(self, out: torch.Tensor) -> None:
        """Record whether ``out`` holds a NaN or an infinity (no host synchronisation)."""
        bad = ~torch.isfinite(out.detach()).all()
        self._bad = bad if self._bad is None else self._bad | bad

    def check(self) -> None:
        """Raise :class:`ModelOutputError` if any recorded output was not finite (one host read)."""
        if self._bad is not None and bool(self._bad):
            raise ModelOutputError(
                f"the model returned NaN or infinite logits during {self.what} for finite inputs inside the "
                "bounds; the model's output is the problem, not the images (check its weights and numerics)"
            )


def progress_bar(total: int | None, enabled: bool, desc: str, unit: str = "step") -> Any:
    """A tqdm bar (a silent one when ``enabled`` is False)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit=unit, dynamic_ncols=True, leave=False)


def batches(name: str, data: Any, *, labelled: bool) -> Iterator[tuple[torch.Tensor, Any]]:
    """Yield ``(images, labels)`` from an iterable of batches such as a ``torch.utils.data.DataLoader``.

    Each item is an ``(images, labels)`` pair (a tuple or list of two; extra entries are ignored)
    or, when ``labelled`` is False, a bare images tensor (labels then come back as None).

    Raises:
        InvalidTypeError: ``data`` is not iterable, or an item is neither a tensor nor a pair.
    """
    if isinstance(data, (torch.Tensor, str, bytes)) or not isinstance(data, Iterable):
        raise InvalidTypeError(
            f"{name} must be an iterable of (images, labels) batches such as a DataLoader, got {type(data).__name__}"
        )
    for i, item in enumerate(data):
        if isinstance(item, torch.Tensor) and not labelled:
            yield item, None
        elif isinstance(item, (tuple, list)) and len(item) >= 2 and isinstance(item[0], torch.Tensor):
            yield item[0], item[1]
        elif isinstance(item, (tuple, list)) and len(item) == 1 and isinstance(item[0], torch.Tensor) and not labelled:
            yield item[0], None
        else:
            what = "(images, labels) pairs" if labelled else "image tensors or (images, labels) pairs"
            got = type(item).__name__ + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
            raise InvalidTypeError(f"{name} must yield {what}; batch {i} is a {got}")


def no_batches(name: str) -> InvalidArgumentError:
    """The error for an iterable that yielded nothing."""
    return InvalidArgumentError(f"{name} must yield at least one batch, got an empty iterable")
