"""The Classifier contract: a tiny structural protocol and the nominal base class with real defaults.

- :class:`Classifier` is what a user's object must have: ``input_shape``, ``num_classes``,
  ``bounds`` and ``__call__(x) -> logits``.
- :class:`BaseClassifier` is what foolbench works with inside: every other member
  (``device``, ``dtype``, ``class_names``, ``batch_size``, chunked no-grad ``probs`` /
  ``log_probs``, ``predict``, ``reference``, ``layers``) has a real default.
- :func:`check_classifier` turns the first into the second (a BaseClassifier passes
  through; another object that follows the protocol is wrapped in a small adapter).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import warnings
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from foolbench import _checks
from foolbench.errors import InvalidArgumentError, InvalidTypeError, ModelOutputError
from foolbench.models._fold import fold_batchnorm

__all__ = [
    "BaseClassifier",
    "Bounds",
    "Classifier",
    "CountingClassifier",
    "TorchClassifier",
    "check_classifier",
    "check_device",
    "weights_digest",
]

_PROTOCOL = ("input_shape", "num_classes", "bounds", "__call__")


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
    """The least a model must offer to be searched, attacked or defended.

    A classifier maps a batch of raw inputs (inside :attr:`bounds`) to logits.
    Preprocessing such as mean/std normalisation or resizing lives inside the
    classifier, never in the caller. Everything else foolbench needs has a default
    in :class:`BaseClassifier`; :func:`check_classifier` supplies it.

    Attributes:
        input_shape: (C, H, W) of one raw input.
        num_classes: number of classes K.
        bounds: the raw input range (lower, upper).

    Examples:
        >>> import foolbench as fb
        >>> clf: Classifier = fb.models.lenet_mnist()
        >>> clf.input_shape, clf.num_classes, tuple(clf.bounds)
        ((1, 28, 28), 10, (0.0, 1.0))
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    bounds: Bounds

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable logits, (B, C, H, W) -> (B, K)."""
        ...


def check_device(name: str, value: Any) -> torch.device:
    """Return ``value`` as a :class:`torch.device` that exists on this machine, or raise naming ``name``.

    Raises:
        InvalidTypeError: not a str or torch.device.
        InvalidArgumentError: an unknown device type, or one this machine does not have.

    Examples:
        >>> check_device("device", "cpu")
        device(type='cpu')
        >>> check_device("device", "tpu9")
        Traceback (most recent call last):
        ...
        foolbench.errors.InvalidArgumentError: device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got 'tpu9'
    """
    if not isinstance(value, (str, torch.device)):
        raise InvalidTypeError(
            f"{name} must be a str or torch.device such as 'cpu' or 'cuda', got {type(value).__name__}"
        )
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise InvalidArgumentError(f"{name} must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {str(value)!r}")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidArgumentError(
                f"{name}={str(value)!r} needs a CUDA GPU, but this machine has none (or torch "
                f"{torch.__version__} was built without CUDA); use {name}='cpu'"
            )
        if dev.index is not None and dev.index >= count:
            raise InvalidArgumentError(
                f"{name}={str(value)!r} names GPU {dev.index}, but this machine has {count} (0..{count - 1})"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidArgumentError(f"{name}={str(value)!r} needs Apple's MPS backend, not available here; use 'cpu'")
    return dev


def _module_device(module: nn.Module, default: torch.device | None = None) -> torch.device:
    """Where the module's first parameter or buffer lives (``default``, else the CPU, when it has none)."""
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    if tensor is None:
        return torch.device("cpu") if default is None else default
    return tensor.device


def _module_dtype(module: nn.Module, default: torch.dtype = torch.float32) -> torch.dtype:
    """The dtype of the module's first floating parameter or buffer (``default`` when it has none)."""
    tensors = itertools.chain(module.parameters(), module.buffers())
    return next((t.dtype for t in tensors if t.is_floating_point()), default)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """``module`` and all its submodules in eval mode for the block; each one's training flag restored after."""
    training = [m for m in module.modules() if m.training]
    for m in training:
        m.training = False
    try:
        yield
    finally:
        for m in training:
            m.training = True


# How often refresh() was called on each network: part of the key of every private copy built from it.
_REFRESHES: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()


def _refreshes(module: nn.Module) -> int:
    """How often :meth:`BaseClassifier.refresh` was called on ``module`` (0 for a module without hash)."""
    try:
        return _REFRESHES.get(module, 0)
    except TypeError:
        return 0


class BaseClassifier(nn.Module):
    """The classifier foolbench works with: input checks, chunked no-grad scores and real defaults.

    Subclasses implement :meth:`logits` on already-checked inputs; every other member
    has a default. Defenses subclass this too, so a defended model is a classifier like
    any other. :func:`check_classifier` wraps other objects that follow the tiny
    :class:`Classifier` protocol in a BaseClassifier.

    Args:
        input_shape: (C, H, W) of one raw input.
        num_classes: number of classes K.
        bounds: raw input range (lower, upper).
        batch_size: largest chunk :meth:`probs` sends through the model at once.
        class_names: names of the K classes (default ``"0"``, ``"1"``, ...).
        check_inputs: check shape, finiteness and bounds of every input batch.

    Raises:
        InvalidArgumentError: a bad shape, bounds, batch size or number of class names.

    Examples:
        >>> import torch
        >>> class Constant(BaseClassifier):
        ...     def logits(self, x):
        ...         return torch.zeros(x.shape[0], self.num_classes)
        >>> clf = Constant(input_shape=(1, 4, 4), num_classes=3)
        >>> [round(p, 4) for p in clf.probs(torch.rand(2, 1, 4, 4))[0].tolist()], clf.device
        ([0.3333, 0.3333, 0.3333], device(type='cpu'))
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
        if isinstance(class_names, str) or not isinstance(class_names, Sequence):
            raise InvalidTypeError(f"class_names must be a list of {self.num_classes} str, got {class_names!r}")
        names = list(class_names)
        if len(names) != self.num_classes:
            raise InvalidArgumentError(f"class_names must hold num_classes={self.num_classes} names, got {len(names)}")
        self.class_names: list[str] = [str(n) for n in names]
        self.check_inputs = _checks.boolean("check_inputs", check_inputs)

    # -- to implement -------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of an already-checked batch on :attr:`device`; subclasses override this."""
        raise NotImplementedError(f"{type(self).__name__} must implement logits(x)")

    # -- defaults a subclass may override --------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the classifier computes (default: where its first parameter or buffer lives, else CPU)."""
        return _module_device(self)

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype inputs are converted to (default float32)."""
        return torch.float32

    def reference(self) -> BaseClassifier:
        """The full-precision classifier whose scores results report (default: ``self``).

        A classifier that computes at reduced precision (e.g. ``TorchClassifier(precision="bf16")``)
        returns its float32 twin, so a confidence of 99.99% means the same at every precision.
        """
        return self

    def network(self) -> nn.Module:
        """The ``nn.Module`` whose weights define this classifier (default: ``self``).

        :class:`~foolbench.models.TorchClassifier` returns the module it wraps; wrappers
        return the network of what they wrap. :func:`weights_digest` hashes it.
        """
        return self

    def identity(self) -> dict[str, Any]:
        """What decides this classifier's scores besides the weights of :meth:`network` (JSON-ready).

        A search's checkpoint keeps a digest of it next to :func:`weights_digest`'s, so it is never
        resumed with the same weights behind other preprocessing or a defense. The default names the
        class and the bounds. Subclasses add their own settings: :class:`TorchClassifier` its
        normalisation and resize, a defense its transformation and the identity of what it wraps. Speed
        settings (precision, compilation, batch size, device) are not part of it.

        Examples:
            >>> import foolbench as fb
            >>> clf = fb.models.lenet_mnist()
            >>> clf.identity() == clf.replace(batch_size=8).identity() != clf.replace(std=0.5).identity()
            True
        """
        return {"type": type(self).__qualname__, "bounds": list(self.bounds)}

    def layers(self) -> dict[str, nn.Module]:
        """The named submodules of :meth:`network`, for hooks (``"conv2"`` -> module)."""
        return {name: m for name, m in self.network().named_modules() if name}

    def refresh(self) -> None:
        """Signal that the weights of :meth:`network` were changed in place through ``.data``.

        A classifier that scores with a private copy of its network (``TorchClassifier`` with
        ``fold_batchnorm=True`` or ``compile=True``) builds a new copy by itself when a parameter or
        buffer is replaced (``module.fc.weight = ...``, ``p.data = ...``, ``vector_to_parameters``) or
        changed in place by a tensor operation (an optimiser step, ``load_state_dict``, ``p.mul_(2)``
        under ``torch.no_grad()``). An in-place change through ``.data`` (``p.data.mul_(2)``,
        ``p.data[0] = 0``) or by a fused optimiser (``Adam(fused=True)``) changes neither the tensor, nor
        its address, nor its version counter: call ``refresh()`` after one. It drops the private copies of every classifier built on the same network
        (the :meth:`~foolbench.models.TorchClassifier.replace` and :meth:`reference` twins too, whichever
        one it is called on); each builds a new one at its next call without gradients. Calls with
        gradients always run the network itself. On a classifier without such a copy it does nothing.

        Examples:
            >>> import torch, foolbench as fb
            >>> net = torch.nn.Sequential(
            ...     torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(8, 3)
            ... ).eval()
            >>> clf = fb.models.TorchClassifier(net, input_shape=(1, 4, 4), num_classes=3, fold_batchnorm=True)
            >>> x = torch.rand(2, 1, 4, 4)
            >>> _ = clf.probs(x)  # builds the folded copy
            >>> _ = net[0].weight.data.mul_(2.0)  # invisible to the classifier...
            >>> clf.refresh()  # ...until it is told
            >>> torch.allclose(clf.probs(x), clf.reference().probs(x), atol=1e-6)
            True
        """
        network = self.network()
        # a module without hash (a dataclass with eq) is not counted: a TorchClassifier still drops its own copies
        with contextlib.suppress(TypeError):
            _REFRESHES[network] = _REFRESHES.get(network, 0) + 1

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
    def log_probs(self, x: torch.Tensor, *, checked: bool = True) -> torch.Tensor:
        """Log-softmax scores without gradients, computed in chunks of :attr:`batch_size`.

        Log-probabilities keep ranking confident images apart where float32
        probabilities round to 1.0, so black-box searches use them as fitness.
        Logits are upcast to float32 before the softmax.

        Args:
            x: raw inputs inside :attr:`bounds`.
            checked: check the input's values and the output's finiteness (each reads a value back
                from the device). A search that renders its own images in bounds passes False on CUDA
                to keep its generation step free of host synchronisation.

        Shape:
            - x: (B, C, H, W) raw inputs.
            - output: (B, K) float32 log-probabilities on :attr:`device`.

        Raises:
            ModelOutputError: the model's output is not (B, K) or not finite.
        """
        x = self.check(x) if checked else x.to(device=self.device, dtype=self.dtype)
        chunks = [F.log_softmax(self._checked_logits(c).float(), dim=1) for c in torch.split(x, self.batch_size)]
        out = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        if checked and not bool(torch.isfinite(out).all()):
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

    def extra_repr(self) -> str:
        return (
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"bounds=({self.bounds.lower:g}, {self.bounds.upper:g}), batch_size={self.batch_size}"
        )


class _ProtocolClassifier(BaseClassifier):
    """A BaseClassifier around an object that follows the tiny :class:`Classifier` protocol.

    The object's optional ``class_names``, ``batch_size``, ``device`` and ``dtype`` are used when it
    declares them (an ``nn.Module``'s dtype is its parameters'); everything else takes the
    BaseClassifier defaults. An ``nn.Module`` is called in eval mode, like in :class:`TorchClassifier`
    (BatchNorm statistics stay as they are, dropout is off), and every submodule's ``training`` flag is
    restored after each call.
    """

    def __init__(self, obj: Any) -> None:
        optional = {k: getattr(obj, k) for k in ("class_names", "batch_size") if hasattr(obj, k)}
        super().__init__(input_shape=obj.input_shape, num_classes=obj.num_classes, bounds=tuple(obj.bounds), **optional)
        self._device = check_device("classifier.device", obj.device) if hasattr(obj, "device") else None
        if isinstance(obj, nn.Module):
            self.wrapped: Any = obj  # registered, so .to() and state_dict() reach it
        else:
            self.__dict__["wrapped"] = obj

    @property
    def device(self) -> torch.device:
        return self._device if self._device is not None else super().device

    @property
    def dtype(self) -> torch.dtype:
        """The object's own ``dtype`` when it declares one, else its first floating parameter's, else float32."""
        declared = getattr(self.wrapped, "dtype", None)
        if isinstance(declared, torch.dtype) and declared.is_floating_point:
            return declared
        return _module_dtype(self.wrapped) if isinstance(self.wrapped, nn.Module) else torch.float32

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The object's logits; an ``nn.Module`` runs in eval mode, each submodule's flag restored after."""
        if not isinstance(self.wrapped, nn.Module):
            out: torch.Tensor = self.wrapped(x)
            return out
        with _eval_mode(self.wrapped):
            out = self.wrapped(x)
        return out

    def network(self) -> nn.Module:
        return self.wrapped if isinstance(self.wrapped, nn.Module) else self

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "type": type(self.wrapped).__qualname__}

    def extra_repr(self) -> str:
        return f"{type(self.wrapped).__name__}, " + super().extra_repr()


def check_classifier(classifier: Any, name: str = "classifier") -> BaseClassifier:
    """Return ``classifier`` as a :class:`BaseClassifier`, or raise naming what is missing.

    A BaseClassifier passes through unchanged; any other object with ``input_shape``,
    ``num_classes``, ``bounds`` and ``__call__`` is wrapped in a small adapter that
    supplies the defaults (``device``, ``class_names``, ``probs``, ...). An ``nn.Module`` is
    called in eval mode, its submodules' ``training`` flags restored after every call.

    Raises:
        InvalidTypeError: a member of the :class:`Classifier` protocol is missing.

    Examples:
        >>> import torch, foolbench as fb
        >>> check_classifier(fb.models.lenet_mnist()).num_classes
        10
        >>> class Tiny:
        ...     input_shape, num_classes, bounds = (1, 2, 2), 3, (0.0, 1.0)
        ...     def __call__(self, x):
        ...         return x.flatten(1)[:, :3]
        >>> check_classifier(Tiny()).probs(torch.rand(5, 1, 2, 2)).shape
        torch.Size([5, 3])
        >>> check_classifier(torch.nn.Linear(2, 2))
        Traceback (most recent call last):
        ...
        foolbench.errors.InvalidTypeError: classifier must follow foolbench.models.Classifier (missing 'input_shape', 'num_classes', 'bounds'); wrap an nn.Module with foolbench.models.TorchClassifier, got Linear
    """
    if isinstance(classifier, BaseClassifier):
        return classifier
    missing = [a for a in _PROTOCOL if not (callable(classifier) if a == "__call__" else hasattr(classifier, a))]
    if missing:
        raise InvalidTypeError(
            f"{name} must follow foolbench.models.Classifier (missing {', '.join(map(repr, missing))}); wrap an "
            f"nn.Module with foolbench.models.TorchClassifier, got {type(classifier).__name__}"
        )
    return _ProtocolClassifier(classifier)


class CountingClassifier(BaseClassifier):
    """Count the images that go through a classifier's forward pass (opt-in).

    Every batch through :meth:`forward`, :meth:`probs` or :meth:`log_probs` adds its
    size to :attr:`evaluations`, with or without gradients.

    Args:
        classifier: the model to count (any :class:`Classifier`).

    Raises:
        InvalidTypeError: ``classifier`` does not follow the protocol.

    Examples:
        >>> import torch, foolbench as fb
        >>> clf = fb.models.CountingClassifier(fb.models.lenet_mnist())
        >>> _ = clf.probs(torch.rand(5, 1, 28, 28)); _ = clf(torch.rand(2, 1, 28, 28))
        >>> clf.evaluations, clf.reset(), clf.evaluations
        (7, 7, 0)
    """

    def __init__(self, classifier: Classifier) -> None:
        clf = check_classifier(classifier)
        super().__init__(
            input_shape=clf.input_shape,
            num_classes=clf.num_classes,
            bounds=clf.bounds,
            batch_size=clf.batch_size,
            class_names=clf.class_names,
            check_inputs=clf.check_inputs,
        )
        self.classifier = clf
        self.evaluations: int = 0

    @property
    def device(self) -> torch.device:
        return self.classifier.device

    @property
    def dtype(self) -> torch.dtype:
        return self.classifier.dtype

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.classifier.logits(x)
        self.evaluations += x.shape[0]
        return out

    def reference(self) -> BaseClassifier:
        """The wrapped classifier's reference (not counted), or ``self`` when that is the wrapped one."""
        ref = self.classifier.reference()
        return self if ref is self.classifier else ref

    def network(self) -> nn.Module:
        return self.classifier.network()

    def identity(self) -> dict[str, Any]:
        """The wrapped classifier's (counting changes no score)."""
        return self.classifier.identity()

    def reset(self) -> int:
        """Set :attr:`evaluations` to zero and return its previous value."""
        old, self.evaluations = self.evaluations, 0
        return old

    def extra_repr(self) -> str:
        return f"evaluations={self.evaluations}"


def _tensor_bytes(t: torch.Tensor) -> bytes:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.element_size() > 1 else flat.numpy().tobytes()


def tensors_digest(tensors: dict[str, torch.Tensor], length: int = 16) -> str:
    """A short stable hash of named tensors (names, dtypes, shapes and bytes), independent of device."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()[:length]


def architecture_digest(classifier: BaseClassifier, length: int = 16) -> str:
    """A short hash of what :func:`weights_digest` cannot see of a classifier's network.

    Each submodule of :meth:`~BaseClassifier.network` by name, with its type and, for a plain
    ``nn.Module``, its ``extra_repr`` (a ReLU and a Sigmoid have no weights; a convolution's stride or a
    BatchNorm's eps neither). A foolbench classifier inside it (an ensemble's members) counts by its type
    alone: its speed settings (batch size, precision) and counters are not the network; an object that
    follows the :class:`Classifier` protocol without being a module (its adapter holds no weights) counts by
    its type and the tensors in its attributes (a module attribute's state dict included). A search's
    checkpoint keeps it next to the weights' digest. An edited ``forward`` with the same layers is not seen.

    Examples:
        >>> import torch.nn as nn, foolbench as fb
        >>> def clf(act):
        ...     return fb.models.TorchClassifier(nn.Sequential(nn.Flatten(), nn.Linear(4, 2), act).eval(),
        ...                                      input_shape=(1, 2, 2), num_classes=2)
        >>> architecture_digest(clf(nn.ReLU())) == architecture_digest(clf(nn.Sigmoid()))
        False
    """
    parts: list[str] = []
    for name, m in classifier.network().named_modules():
        kind = f"{type(m).__module__}.{type(m).__qualname__}"
        if isinstance(m, _ProtocolClassifier) and not isinstance(m.wrapped, nn.Module):
            tensors: dict[str, torch.Tensor] = {}
            for key, value in sorted(vars(m.wrapped).items()):
                if isinstance(value, torch.Tensor):
                    tensors[key] = value.detach()
                elif isinstance(value, nn.Module):
                    tensors.update({f"{key}.{k}": t for k, t in value.state_dict().items()})
            wrapped = type(m.wrapped)
            parts.append(f"{name}|{wrapped.__module__}.{wrapped.__qualname__}|{tensors_digest(tensors, 64)}")
        elif isinstance(m, BaseClassifier):
            parts.append(f"{name}|{kind}")
        else:
            parts.append(f"{name}|{kind}|{m.extra_repr()}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:length]


def weights_digest(model: nn.Module | BaseClassifier) -> str:
    """A short stable hash of a model's weights (its state dict), for keying caches.

    A :class:`~foolbench.models.TorchClassifier` hashes the module it wraps, so
    ``weights_digest(clf) == weights_digest(clf.module)``. The digest depends on the
    parameter and buffer names, dtypes, shapes and values, not on the device.

    Args:
        model: an ``nn.Module`` or a foolbench classifier.

    Returns:
        16 hexadecimal characters.

    Raises:
        InvalidTypeError: ``model`` is not an ``nn.Module``.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> d = fb.models.weights_digest(clf)
        >>> len(d), d == fb.models.weights_digest(clf.module), d == fb.models.weights_digest(fb.models.LeNet())
        (16, True, False)
    """
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"model must be an nn.Module or a foolbench classifier, got {type(model).__name__}")
    module = model.network() if isinstance(model, BaseClassifier) else model
    return tensors_digest(dict(module.state_dict()))


def _freezing() -> contextlib.AbstractContextManager[Any]:
    """Inductor's ``freezing`` switched on for the block (a no-op where this torch lacks it)."""
    try:
        from torch._inductor import config
    except ImportError:  # pragma: no cover (every supported torch has it)
        return contextlib.nullcontext()
    patch: contextlib.AbstractContextManager[Any] = config.patch(freezing=True)
    return patch


_PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidTypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def _indexed(device: torch.device) -> torch.device:
    """``cuda`` as the ``cuda:N`` it stands for (a tensor's device always has its index)."""
    index: int | None = device.index  # (typed as an int, but None for a bare "cuda")
    if device.type == "cuda" and index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _nontrivial(values: list[float] | None, identity: float) -> list[float] | None:
    """``values``, or None when applying them would change nothing (every one is ``identity``)."""
    return None if values is None or all(v == identity for v in values) else values


def _stat(name: str, value: Any, channels: int) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        values = [value]
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = list(value)
    else:
        raise InvalidTypeError(f"{name} must be a number, a list of {channels} numbers or None, got {value!r}")
    if len(values) not in (1, channels):
        raise InvalidArgumentError(
            f"{name} must have 1 or {channels} values (one per channel of input_shape), got {len(values)}"
        )
    return [_checks.real(f"{name}[{i}]", v) for i, v in enumerate(values)]


class TorchClassifier(BaseClassifier):
    """Wrap any ``torch.nn.Module`` as a :class:`Classifier`.

    The module is called in evaluation mode; its ``training`` flags (and those of its
    submodules) are restored after every call. Mean/std normalisation and resizing are
    applied inside the adapter, so callers always work on raw inputs inside ``bounds``.
    At construction one dummy forward (a batch of 1, no gradients) checks that the
    module accepts ``input_shape`` and returns ``num_classes`` logits.

    The adapter follows its module: :attr:`device` and :attr:`dtype` are read from the module's
    first parameter or buffer at each call, and :attr:`mean` / :attr:`std` are made on that device in
    that dtype. The module is shared by the adapters :meth:`replace` (without a new ``device`` or
    ``module``) and :meth:`reference` make, so ``.to()``, ``.cuda()``, ``.double()``, ``.float()``...
    on any of them convert the module of all of them, and all follow: after ``clf.double()`` a
    ``precision="bf16"`` twin still runs under bf16 autocast, and its reference computes in float64.
    To convert one adapter alone, give it its own module first (``clf.replace(device="cuda")`` copies
    the module; ``clf.replace(module=copy.deepcopy(clf.module))`` too).

    Args:
        module: maps a preprocessed (B, C, H', W') batch to (B, num_classes) logits.
        input_shape: (C, H, W) of one raw input.
        num_classes: number of classes K.
        bounds: raw input range.
        mean: per-channel mean subtracted after resizing (length 1 or C), or None.
        std: per-channel std divided by (length 1 or C), or None.
        resize: (H', W') the module expects, when it differs from the raw input size.
        device: where to compute; the module is moved there. Default: the module's device. (For a
            module without parameters or buffers this is where inputs are sent.)
        batch_size: largest chunk :meth:`probs` evaluates at once.
        class_names: names of the K classes.
        check_inputs: check every input batch (shape, finiteness, bounds).
        precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` to run the module under
            ``torch.autocast`` on its device type; logits are upcast to float32 either way, and
            :meth:`reference` gives the float32 twin whose scores results should report. On CPU
            bf16 is the useful one (fp16 autocast is slow there).
        channels_last: convert the module (in place, so adapters sharing it see it too; the
            values do not change) and its inputs to the channels-last memory format.
        compile: run the module through ``torch.compile`` (compiled at the first call; if
            compilation fails, one warning and the module runs uncompiled). Calls without
            gradients run a graph with the weights frozen in (inductor's ``freezing``; 1.7x
            EfficientNet-Lite0 on a 2-core CPU), compiled from a private copy of the module that is
            replaced, and compiled again, when the weights change as ``fold_batchnorm`` describes.
        fold_batchnorm: for calls without gradients (:meth:`log_probs`, :meth:`probs`, searches),
            run a copy of the module in which each BatchNorm fed directly by a convolution is folded
            into that convolution (1.5x EfficientNet-Lite0 on a 2-core CPU). The copy is built at
            the first such call, checked against the module on a random batch (not used, with one
            warning, if they disagree beyond float rounding), and built again at the next such call
            after a parameter or buffer of the module is replaced (``module.fc.weight = ...``,
            ``p.data = ...``, ``vector_to_parameters``, ``.to()`` / ``.double()``) or changed in place
            by a tensor operation (an optimiser step, ``load_state_dict``, ``p.mul_(2)`` under
            ``torch.no_grad()``). An in-place change through ``.data`` (``p.data.mul_(2)``) or a fused
            optimiser's step (``Adam(fused=True)``) is not seen: call :meth:`refresh` after one. Calls with gradients use the module itself. Scores
            differ from the unfolded module's by float rounding (about 1e-5 in the logits), so
            :meth:`reference` is the unfolded twin.

    Raises:
        InvalidTypeError: ``module`` is not an ``nn.Module``, or a flag is not a bool.
        InvalidArgumentError: bad shape, bounds, mean/std, batch size, precision or device;
            or the module rejects a batch of ``input_shape``.
        ModelOutputError: the module does not return ``num_classes`` logits per input.

    Shape:
        - input: (B, C, H, W) raw images.
        - output: (B, K) logits (float32 when ``precision`` is reduced).

    Examples:
        >>> import torch, foolbench as fb
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
        >>> clf = fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10)
        >>> clf.probs(torch.rand(5, 1, 28, 28)).shape
        torch.Size([5, 10])
        >>> fast = clf.replace(precision="bf16")
        >>> fast.module is clf.module, fast.reference().precision
        (True, 'fp32')
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
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        fold_batchnorm: bool = False,
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
        self.precision: str = _checks.choice("precision", precision, _PRECISIONS)
        self.channels_last: bool = _flag("channels_last", channels_last)
        self.compile_module: bool = _flag("compile", compile)
        self.fold_batchnorm: bool = _flag("fold_batchnorm", fold_batchnorm)
        channels = self.input_shape[0]
        mean_v, std_v = _stat("mean", mean, channels), _stat("std", std, channels)
        if std_v is not None and min(std_v) <= 0:
            raise InvalidArgumentError(f"std must be positive, got {std!r}")
        self.resize: tuple[int, int] | None = self._resize(resize)
        own_device = _module_device(module) if device is None else check_device("device", device)
        if device is not None:
            module.to(own_device)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # used only while the module has no parameter or buffer (floating one, for the dtype)
        self._dtype = _module_dtype(module)
        self._device = own_device
        self.module: nn.Module = module
        self._stats = (_nontrivial(mean_v, 0.0), _nontrivial(std_v, 1.0))
        self._stat_tensors: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor | None, ...]] = {}
        self._settings: dict[str, Any] = {
            "input_shape": self.input_shape, "num_classes": self.num_classes, "bounds": tuple(self.bounds),
            "mean": mean_v, "std": std_v, "resize": resize, "device": own_device, "batch_size": self.batch_size,
            "class_names": list(self.class_names), "check_inputs": self.check_inputs,
            "precision": self.precision, "channels_last": self.channels_last, "compile": self.compile_module,
            "fold_batchnorm": self.fold_batchnorm,
        }  # fmt: skip
        self._cache: dict[str, Any] = {}  # the compiled module and the float32 reference, built on first use
        self._probe()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and deep-copied without the cache (compiled graphs do not pickle; rebuilt on first use)."""
        state = self.__dict__.copy()
        state["_cache"] = {}
        state["_stat_tensors"] = {}
        return state

    def _apply(self, fn: Any, recurse: bool = True) -> TorchClassifier:
        """``.to()``, ``.cuda()``, ``.double()``... move or cast the module, shared with this adapter's twins.

        Every adapter of the module follows it (each reads the device and dtype from the module at every
        call; its normalisation tensors are made there). This one drops its cached float32 twin and
        compiled module (rebuilt on first use); the twins build their folded or frozen copies again at
        their next call, the module's tensors being new ones.
        """
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        try:  # where the conversion takes a tensor: the device and dtype of a module without any
            probe = fn(torch.empty(0, device=self._device, dtype=self._dtype))
        except Exception:  # noqa: BLE001 (a conversion that needs a real tensor: those of the module tell)
            probe = None
        if isinstance(probe, torch.Tensor) and probe.is_floating_point():
            self._device, self._dtype = probe.device, probe.dtype
        self._cache.clear()
        return self

    def _resize(self, resize: Sequence[int] | None) -> tuple[int, int] | None:
        if resize is None:
            return None
        if not isinstance(resize, Sequence) or len(resize) != 2:
            raise InvalidArgumentError(f"resize must be an (height, width) pair, got {resize!r}")
        size = (_checks.positive_int("resize[0]", resize[0]), _checks.positive_int("resize[1]", resize[1]))
        return None if size == self.input_shape[1:] else size

    def _normalisation(self) -> tuple[torch.Tensor | None, ...]:
        """(mean, std) as (1, C, 1, 1) tensors on :attr:`device` in :attr:`dtype` (made once for each pair)."""
        key = (self.device, self.dtype)
        made = self._stat_tensors.get(key)
        if made is None:
            with torch.inference_mode(False):  # made under inference_mode, they would break later gradient calls
                made = self._stat_tensors[key] = tuple(
                    None if v is None else torch.tensor(v, dtype=key[1], device=key[0]).view(1, -1, 1, 1)
                    for v in self._stats
                )
        return made

    @property
    def mean(self) -> torch.Tensor | None:
        """The per-channel mean subtracted from inputs, (1, C, 1, 1) on :attr:`device` in :attr:`dtype`; or None."""
        return self._normalisation()[0]

    @property
    def std(self) -> torch.Tensor | None:
        """The per-channel std inputs are divided by, (1, C, 1, 1) on :attr:`device` in :attr:`dtype`; or None."""
        return self._normalisation()[1]

    def _probe(self) -> None:
        """One dummy forward (batch of 1, no grad, eval mode) to check input_shape and num_classes."""
        lo, hi = self.bounds
        x = torch.full((1, *self.input_shape), (lo + hi) / 2, device=self.device, dtype=self.dtype)
        try:
            with torch.no_grad():
                out = self._run(self.module, self.preprocess(x))
        except Exception as err:
            resized = f", resized to {self.resize}," if self.resize is not None else ""
            raise InvalidArgumentError(
                f"input_shape={self.input_shape} does not fit the module: one input of that shape{resized} "
                f"made it raise {type(err).__name__}: {err}"
            ) from err
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, self.num_classes):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelOutputError(
                f"the module must return logits of shape (B, num_classes) = (1, {self.num_classes}) for one input "
                f"of input_shape={self.input_shape}, got {got}"
            )

    @property
    def device(self) -> torch.device:
        """Where the module's first parameter or buffer is now (without any: the constructor's ``device``)."""
        return _module_device(self.module, self._device)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the module's first floating parameter or buffer now (inputs are converted to it)."""
        return _module_dtype(self.module, self._dtype)

    def network(self) -> nn.Module:
        return self.module

    def replace(self, **changes: Any) -> TorchClassifier:
        """A new adapter with some settings changed; the module is shared unless ``module=`` is given.

        A new ``device`` copies the module there (``self`` keeps working where it is); otherwise the
        result shares the module, and its device and dtype, wherever ``.to()`` took them since.

        Every setting of the constructor can be changed; the result is validated like a
        new :class:`TorchClassifier` (including the dummy forward).

        Raises:
            InvalidArgumentError: an unknown setting, or a bad value (as in the constructor).

        Examples:
            >>> import foolbench as fb
            >>> clf = fb.models.lenet_mnist()
            >>> clf.replace(batch_size=8).batch_size, clf.replace(batch_size=8).module is clf.module
            (8, True)
        """
        unknown = sorted(set(changes) - set(self._settings) - {"module"})
        if unknown:
            raise InvalidArgumentError(
                f"replace() got unknown setting(s) {unknown}; valid: {sorted([*self._settings, 'module'])}"
            )
        # the public attributes as they are now (a later ``clf.batch_size = 8`` included), then the changes
        current = {
            "batch_size": self.batch_size,
            "check_inputs": self.check_inputs,
            "class_names": list(self.class_names),
        }
        settings = {**self._settings, **current, "device": self.device, **changes}
        module = settings.pop("module", None)
        if module is None:
            module = self.module
            device = settings.get("device")
            if device is not None and _indexed(check_device("device", device)) != _indexed(self.device):
                module = copy.deepcopy(module)  # moving the shared module would break this adapter
        return TorchClassifier(module, **settings)

    def reference(self) -> BaseClassifier:
        """``self`` at fp32 as the module computes it; reduced precision, compiled or folded: the plain float32 twin."""
        if self.precision == "fp32" and not self.compile_module and not self.fold_batchnorm:
            return self
        if "reference" not in self._cache:
            self._cache["reference"] = self.replace(precision="fp32", compile=False, fold_batchnorm=False)
        ref: BaseClassifier = self._cache["reference"]
        # the public settings as they are now (replace() reads them too), on the one twin kept
        ref.batch_size, ref.check_inputs = self.batch_size, self.check_inputs
        ref.class_names = list(self.class_names)
        return ref

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Resize and normalise a raw batch the way the module expects (differentiable)."""
        if self.resize is not None:
            x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False)
        mean, std = self._normalisation()
        if mean is not None:
            x = x - mean
        if std is not None:
            x = x / std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _run(self, fn: Any, x: torch.Tensor) -> Any:
        """Call ``fn`` in eval mode (training flags restored), under autocast at reduced precision."""
        with _eval_mode(self.module):
            autocast = _PRECISIONS[self.precision]
            if autocast is None:
                return fn(x)
            with torch.autocast(device_type=self.device.type, dtype=autocast):
                out = fn(x)
            return out.float() if isinstance(out, torch.Tensor) else out

    def _weights_version(self) -> tuple[int, ...]:
        """Changes when a parameter or buffer of the module is replaced (``p.data = ...`` too: a new address)
        or changed in place by a tensor operation (its version counter), and at each :meth:`refresh`.

        A cache entry keyed on it keeps :meth:`_weights_alive` beside it: were the old weights freed, a
        tensor set later (twice replaced between two calls) could take their address and look unchanged.
        Fused optimisers (``Adam(fused=True)``) write in place without a version bump: call :meth:`refresh`.
        """
        tensors = itertools.chain(self.module.parameters(), self.module.buffers())
        keys = (v for t in tensors for v in (id(t), t._version, t.data_ptr()))
        return (_refreshes(self.module), *keys)

    def _weights_alive(self) -> list[torch.Tensor]:
        """Aliases of the module's parameters and buffers: their memory stays taken while a cache entry holds them."""
        return [t.detach() for t in itertools.chain(self.module.parameters(), self.module.buffers())]

    def refresh(self) -> None:
        """Signal that the module's weights were changed in place through ``.data``; see :meth:`BaseClassifier.refresh`.

        This adapter's private copies (folded, frozen compiled graph) are freed at once; those of the
        adapters sharing the module are built again at their next call without gradients.

        Examples:
            >>> import torch, foolbench as fb
            >>> clf = fb.models.lenet_mnist().replace(fold_batchnorm=True)
            >>> clf.module.conv1.weight.data[0] = 0.0  # through .data: call refresh() after
            >>> clf.refresh()
        """
        super().refresh()
        for key in ("folded", "frozen"):
            if key in self._cache:
                self._cache[key] = (None, None)  # (a version no call matches: built again at the next call)

    def _folded(self) -> nn.Module:
        """The module with its conv -> BatchNorm pairs folded (built once per weights version)."""
        version = self._weights_version()
        cached = self._cache.get("folded")
        if cached is not None and cached[0] == version:
            folded: nn.Module = cached[1]
            return folded
        lo, hi = self.bounds
        gen = torch.Generator().manual_seed(0)
        example = (lo + (hi - lo) * torch.rand((2, *self.input_shape), generator=gen)).to(self.device, self.dtype)
        with torch.no_grad(), _eval_mode(self.module):
            folded, report = fold_batchnorm(self.module, self.preprocess(example))
        if not report.ok:
            warnings.warn(
                f"fold_batchnorm=True: the folded module's logits differ from the module's by {report.max_abs_diff:.3g} "
                "on a random batch (a convolution's output is probably used by more than its BatchNorm); "
                "running the module unfolded",
                RuntimeWarning,
                stacklevel=4,
            )
        elif not report.folded and "folded" not in self._cache:
            warnings.warn(
                f"fold_batchnorm=True: no BatchNorm of the module (it has {report.batchnorms}) takes a convolution's "
                "output directly; nothing to fold",
                RuntimeWarning,
                stacklevel=4,
            )
        self._cache["folded"] = (version, folded, self._weights_alive())
        return folded

    def _callable(self) -> nn.Module:
        """The module a call runs: the folded copy for calls without gradients when folding is on."""
        if self.fold_batchnorm and not torch.is_grad_enabled():
            return self._folded()
        return self.module

    def _compiled(self, x: torch.Tensor) -> torch.Tensor:
        """Run the compiled module: frozen for calls without gradients, plain for calls with them.

        Without gradients the weights are baked into the graph (inductor's ``freezing``: folded
        BatchNorms, prepacked convolution weights; 1.4-1.7x EfficientNet-Lite0 on 2-core CPUs). A frozen
        graph never sees a later change of the weights, and torch's compile cache is keyed by the
        code, not the values; so it is built from a private copy of the module, a new one whenever
        a parameter or buffer changes.
        """
        frozen = not torch.is_grad_enabled()
        key, version = ("frozen", self._weights_version()) if frozen else ("compiled", None)
        entry = self._cache.get(key)
        mode = _freezing() if frozen else contextlib.nullcontext()
        if entry is not None and entry[0] == version:
            with mode:
                out: torch.Tensor = self._run(entry[1], x)
            return out
        module = self._callable() if frozen else self.module
        if frozen and module is self.module:  # (the folded module is already a private copy)
            module = copy.deepcopy(self.module).eval()
        fn: Any = torch.compile(module)
        try:
            with mode:
                out = self._run(fn, x)
        except Exception as err:  # noqa: BLE001 (any compiler failure: fall back to the plain module, warn once)
            warnings.warn(
                f"compile=True: torch.compile failed ({type(err).__name__}: {err}); running the module uncompiled",
                RuntimeWarning,
                stacklevel=3,
            )
            self._cache["compile_failed"] = True
            fn = module
            out = self._run(fn, x)
        self._cache[key] = (version, fn, self._weights_alive() if frozen else None)
        return out

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        if self.compile_module and not self._cache.get("compile_failed"):
            return self._compiled(x)
        out: torch.Tensor = self._run(self._callable(), x)
        return out

    def train(self, mode: bool = True) -> TorchClassifier:
        # The adapter never trains the wrapped module; keep only the adapter's own flag.
        self.training = mode
        return self

    def identity(self) -> dict[str, Any]:
        def stat(values: list[float] | None) -> list[float] | None:  # one value for all channels: as one
            return values[:1] if values and len(set(values)) == 1 else values

        resize = None if self.resize is None else list(self.resize)
        mean, std = self._stats  # mean 0 and std 1 already as None: they change nothing
        return {**super().identity(), "mean": stat(mean), "std": stat(std), "resize": resize}

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        if self.mean is not None:
            extra += f", mean={self.mean.flatten().tolist()}"
        if self.std is not None:
            extra += f", std={self.std.flatten().tolist()}"
        if self.resize is not None:
            extra += f", resize={self.resize}"
        if self.precision != "fp32":
            extra += f", precision={self.precision!r}"
        if self.channels_last:
            extra += ", channels_last=True"
        if self.compile_module:
            extra += ", compile=True"
        if self.fold_batchnorm:
            extra += ", fold_batchnorm=True"
        return extra + f", device={self.device}"
