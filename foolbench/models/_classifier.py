"""The Classifier protocol and the adapter that turns any ``nn.Module`` into one."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from foolbench import _checks
from foolbench.errors import InvalidArgumentError, InvalidTypeError, ModelOutputError

__all__ = ["BaseClassifier", "Bounds", "Classifier", "TorchClassifier", "check_classifier"]


class Bounds(NamedTuple):
    """The raw input range of a classifier: every pixel lies in ``[lower, upper]``.

    Examples:
        >>> Bounds(0.0, 1.0).upper
        1.0
    """

    lower: float
    upper: float


@runtime_checkable
class Classifier(Protocol):
    """What every search, attack and defense needs from a model.

    A classifier maps a batch of raw inputs (inside :attr:`bounds`) to logits.
    Preprocessing such as mean/std normalisation or resizing lives inside the
    classifier, never in the caller.

    Attributes:
        input_shape: (C, H, W) of one raw input.
        num_classes: number of classes K.
        bounds: the raw input range.
        evaluations: how many images have been through a forward pass.
        class_names: one name per class.

    Examples:
        >>> import foolbench as fb
        >>> clf: Classifier = fb.models.lenet_mnist()
        >>> clf.input_shape, clf.num_classes, tuple(clf.bounds)
        ((1, 28, 28), 10, (0.0, 1.0))
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    bounds: Bounds
    evaluations: int
    class_names: list[str]

    @property
    def device(self) -> torch.device:
        """Where the classifier computes."""
        ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable logits, (B, C, H, W) -> (B, K)."""
        ...

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """No-grad, chunked softmax probabilities, (B, C, H, W) -> (B, K)."""
        ...

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """No-grad, chunked log-softmax, (B, C, H, W) -> (B, K); does not saturate near 1."""
        ...


def check_classifier(classifier: Any, name: str = "classifier") -> Classifier:
    """Return ``classifier`` when it follows the :class:`Classifier` protocol, else raise naming what is missing.

    Raises:
        InvalidTypeError: an attribute or method of the protocol is missing.

    Examples:
        >>> import torch, foolbench as fb
        >>> check_classifier(fb.models.lenet_mnist()).num_classes
        10
        >>> check_classifier(torch.nn.Linear(2, 2))
        Traceback (most recent call last):
        ...
        foolbench.errors.InvalidTypeError: classifier must follow foolbench.models.Classifier (missing 'input_shape'); wrap an nn.Module with foolbench.models.TorchClassifier, got Linear
    """
    for attr in ("input_shape", "num_classes", "bounds", "log_probs", "probs"):
        if not hasattr(classifier, attr):
            raise InvalidTypeError(
                f"{name} must follow foolbench.models.Classifier (missing {attr!r}); wrap an "
                f"nn.Module with foolbench.models.TorchClassifier, got {type(classifier).__name__}"
            )
    return classifier  # type: ignore[no-any-return]


class BaseClassifier(nn.Module):
    """Shared machinery of foolbench classifiers: input checks, chunking, counting.

    Subclasses implement :meth:`logits` on already-checked inputs. Defenses
    subclass this too, so a defended model is a classifier like any other.

    Args:
        input_shape: (C, H, W) of one raw input.
        num_classes: number of classes K.
        bounds: raw input range (lower, upper).
        batch_size: largest chunk :meth:`probs` sends through the model at once.
        class_names: names of the K classes (default ``"0"``, ``"1"``, ...).
        check_inputs: check shape, finiteness and bounds of every input batch.

    Examples:
        >>> import torch
        >>> class Constant(BaseClassifier):
        ...     device = torch.device("cpu")
        ...     def logits(self, x):
        ...         return torch.zeros(x.shape[0], self.num_classes)
        >>> [round(p, 4) for p in Constant(input_shape=(1, 4, 4), num_classes=3).probs(torch.rand(2, 1, 4, 4))[0].tolist()]
        [0.3333, 0.3333, 0.3333]
    """

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        bounds: Sequence[float] = (0.0, 1.0),
        batch_size: int = 256,
        class_names: Sequence[str] | None = None,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        self.input_shape: tuple[int, int, int] = _checks.shape3("input_shape", input_shape)
        self.num_classes: int = _checks.positive_int("num_classes", num_classes, minimum=2)
        if not isinstance(bounds, Sequence) or len(bounds) != 2:
            raise InvalidArgumentError(f"bounds must be a (lower, upper) pair, got {bounds!r}")
        lower = _checks.real("bounds[0]", bounds[0])
        upper = _checks.real("bounds[1]", bounds[1])
        if not lower < upper:
            raise InvalidArgumentError(f"bounds must satisfy lower < upper, got {tuple(bounds)!r}")
        self.bounds: Bounds = Bounds(lower, upper)
        self.batch_size: int = _checks.positive_int("batch_size", batch_size)
        if class_names is None:
            class_names = [str(i) for i in range(self.num_classes)]
        names = list(class_names)
        if len(names) != self.num_classes:
            raise InvalidArgumentError(f"class_names must hold num_classes={self.num_classes} names, got {len(names)}")
        self.class_names: list[str] = [str(n) for n in names]
        self.check_inputs = bool(check_inputs)
        self.evaluations: int = 0

    # -- to implement -------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of an already-checked batch; subclasses override this."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """The device the classifier computes on."""
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype the classifier computes in."""
        return torch.float32

    # -- public API -----------------------------------------------------------------
    def check(self, x: Any, name: str = "x") -> torch.Tensor:
        """Check a raw batch against this classifier and move it to its device and dtype.

        Raises:
            InvalidTypeError: ``x`` is not a floating tensor.
            InvalidArgumentError: wrong rank or shape, NaN/inf, or values outside :attr:`bounds`.
        """
        if self.check_inputs:
            x = _checks.images(name, x, shape=self.input_shape, bounds=self.bounds)
        elif not isinstance(x, torch.Tensor):
            raise InvalidTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        moved: torch.Tensor = x.to(device=self.device, dtype=self.dtype)
        return moved

    def _checked_logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits(x)
        if not isinstance(out, torch.Tensor) or out.shape != (x.shape[0], self.num_classes):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelOutputError(
                f"the model must return logits of shape (B, num_classes) = ({x.shape[0]}, {self.num_classes}), "
                f"got {got}"
            )
        self.evaluations += x.shape[0]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable logits.

        Shape:
            - x: (B, C, H, W) raw inputs inside :attr:`bounds`.
            - output: (B, K) logits.
        """
        out: torch.Tensor = self._checked_logits(self.check(x))
        return out

    @torch.no_grad()
    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Log-softmax scores without gradients, computed in chunks of :attr:`batch_size`.

        Log-probabilities keep ranking confident images apart where float32
        probabilities round to 1.0, so black-box searches use them as fitness.

        Shape:
            - x: (B, C, H, W) raw inputs.
            - output: (B, K) float32 log-probabilities on :attr:`device`.

        Raises:
            ModelOutputError: the model's output is not (B, K) or not finite.
        """
        x = self.check(x)
        chunks = [F.log_softmax(self._checked_logits(c).float(), dim=1) for c in torch.split(x, self.batch_size)]
        out = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        if not bool(torch.isfinite(out).all()):
            raise ModelOutputError("the model returned NaN or infinite logits")
        return out

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities without gradients, chunked like :meth:`log_probs`.

        Shape:
            - x: (B, C, H, W) raw inputs.
            - output: (B, K), rows sum to 1.
        """
        return self.log_probs(x).exp()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted class indices, (B, C, H, W) -> (B,) int64."""
        return self.log_probs(x).argmax(dim=1)

    def reset_evaluations(self) -> int:
        """Set the evaluation counter to zero and return its previous value."""
        old, self.evaluations = self.evaluations, 0
        return old

    def extra_repr(self) -> str:
        return (
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"bounds=({self.bounds.lower:g}, {self.bounds.upper:g}), batch_size={self.batch_size}"
        )


class TorchClassifier(BaseClassifier):
    """Wrap any ``torch.nn.Module`` as a :class:`Classifier`.

    The module is called in evaluation mode; its ``training`` flags (and those
    of its submodules) are restored after every call. Mean/std normalisation
    and resizing are applied inside the adapter, so callers always work on raw
    inputs inside ``bounds``.

    Args:
        module: maps a preprocessed (B, C, H', W') batch to (B, num_classes) logits.
        input_shape: (C, H, W) of one raw input.
        num_classes: number of classes K.
        bounds: raw input range.
        mean: per-channel mean subtracted after resizing (length 1 or C), or None.
        std: per-channel std divided by (length 1 or C), or None.
        resize: (H', W') the module expects, when it differs from the raw input size.
        device: where to compute; the module is moved there. Default: the module's device.
        batch_size: largest chunk :meth:`probs` evaluates at once.
        class_names: names of the K classes.
        check_inputs: check every input batch (shape, finiteness, bounds).

    Raises:
        InvalidTypeError: ``module`` is not an ``nn.Module``.
        InvalidArgumentError: bad shape, bounds, mean/std length or batch size.

    Shape:
        - input: (B, C, H, W) raw images.
        - output: (B, K) logits.

    Examples:
        >>> import torch, foolbench as fb
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
        >>> clf = fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10)
        >>> clf.probs(torch.rand(5, 1, 28, 28)).shape
        torch.Size([5, 10])
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        bounds: Sequence[float] = (0.0, 1.0),
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        resize: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        batch_size: int = 256,
        class_names: Sequence[str] | None = None,
        check_inputs: bool = True,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise InvalidTypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        super().__init__(
            input_shape=input_shape,
            num_classes=num_classes,
            bounds=bounds,
            batch_size=batch_size,
            class_names=class_names,
            check_inputs=check_inputs,
        )
        if module.training:
            warnings.warn(
                "module is in training mode; foolbench calls it in eval mode and restores the flag "
                "afterwards (call module.eval() to silence this warning)",
                UserWarning,
                stacklevel=2,
            )
        tensors = [*module.parameters(), *module.buffers()]
        own_device = tensors[0].device if tensors else torch.device("cpu")
        self._dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
        if device is not None:
            own_device = torch.device(device)
            module.to(own_device)
        self._device = own_device
        self.module: nn.Module = module
        channels = self.input_shape[0]
        self.mean: torch.Tensor | None = self._stat("mean", mean, channels, default=0.0)
        self.std: torch.Tensor | None = self._stat("std", std, channels, default=1.0)
        if self.std is not None and bool((self.std <= 0).any()):
            raise InvalidArgumentError(f"std must be positive, got {std!r}")
        self.resize: tuple[int, int] | None = None
        if resize is not None:
            if not isinstance(resize, Sequence) or len(resize) != 2:
                raise InvalidArgumentError(f"resize must be an (height, width) pair, got {resize!r}")
            size = (_checks.positive_int("resize[0]", resize[0]), _checks.positive_int("resize[1]", resize[1]))
            self.resize = None if size == self.input_shape[1:] else size

    def _stat(
        self, name: str, value: Sequence[float] | float | None, channels: int, default: float
    ) -> torch.Tensor | None:
        if value is None:
            return None
        values = [value] if isinstance(value, (int, float)) else list(value)
        if len(values) not in (1, channels):
            raise InvalidArgumentError(
                f"{name} must have 1 or {channels} values (one per channel of input_shape), got {len(values)}"
            )
        for i, v in enumerate(values):
            _checks.real(f"{name}[{i}]", v)
        t = torch.tensor(values, dtype=self._dtype, device=self._device).view(1, -1, 1, 1)
        return None if bool((t == default).all()) else t

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Resize and normalise a raw batch the way the module expects (differentiable)."""
        if self.resize is not None:
            x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False)
        if self.mean is not None:
            x = x - self.mean
        if self.std is not None:
            x = x / self.std
        return x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        training = [m for m in self.module.modules() if m.training]
        for m in training:
            m.training = False
        try:
            out: torch.Tensor = self.module(self.preprocess(x))
            return out
        finally:
            for m in training:
                m.training = True

    def train(self, mode: bool = True) -> TorchClassifier:
        # The adapter never trains the wrapped module; keep only the adapter's own flag.
        self.training = mode
        return self

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        if self.mean is not None:
            extra += f", mean={self.mean.flatten().tolist()}"
        if self.std is not None:
            extra += f", std={self.std.flatten().tolist()}"
        if self.resize is not None:
            extra += f", resize={self.resize}"
        return extra + f", device={self.device}"
