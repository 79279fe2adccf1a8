"""The exceptions foolbench raises.

Every error foolbench raises on bad input derives from :class:`FoolbenchError`,
and also from the built-in exception that fits (:class:`ValueError` or
:class:`TypeError`), so ``except ValueError`` keeps working. Messages name the
argument, what was expected and what was received.

Examples:
    >>> import foolbench as fb
    >>> issubclass(fb.errors.InvalidArgumentError, ValueError)
    True
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "FoolbenchError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "MissingDependencyError",
    "ModelOutputError",
]


class FoolbenchError(Exception):
    """Base class of every exception raised by foolbench.

    Examples:
        >>> import foolbench as fb
        >>> try:
        ...     fb.models.load_model("resnet")
        ... except fb.errors.FoolbenchError as err:
        ...     print(type(err).__name__)
        InvalidArgumentError
    """


class InvalidArgumentError(FoolbenchError, ValueError):
    """An argument has the right type but a wrong value, shape or range.

    Examples:
        >>> import foolbench as fb
        >>> fb.search.PGD(eps=-1.0)
        Traceback (most recent call last):
        ...
        foolbench.errors.InvalidArgumentError: eps must be a finite number in [0, inf), got -1.0
    """


class InvalidTypeError(FoolbenchError, TypeError):
    """An argument has the wrong type or dtype.

    Examples:
        >>> import numpy as np, foolbench as fb
        >>> fb.models.lenet_mnist().probs(np.zeros((1, 1, 28, 28)))
        Traceback (most recent call last):
        ...
        foolbench.errors.InvalidTypeError: x must be a torch.Tensor of shape (B, C, H, W), got ndarray
    """


class ModelOutputError(FoolbenchError, ValueError):
    """A wrapped model returned output of the wrong shape or non-finite values.

    Examples:
        >>> import torch, foolbench as fb
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 3)).eval()
        >>> fb.models.TorchClassifier(net, input_shape=(1, 28, 28), num_classes=10)
        Traceback (most recent call last):
        ...
        foolbench.errors.ModelOutputError: the module must return logits of shape (B, num_classes) = (1, 10) for one input of input_shape=(1, 28, 28), got (1, 3)
    """


class CheckpointError(FoolbenchError, ValueError):
    """A checkpoint or archive file is corrupt, foreign or from another configuration.

    Examples:
        >>> import foolbench as fb
        >>> fb.encodings.DirectEncoding((1, 28, 28)).genomes_from_state({})
        Traceback (most recent call last):
        ...
        foolbench.errors.CheckpointError: stored genomes do not fit DirectEncoding(image_shape=(1, 28, 28), mutation_rate=0.1, eta=15): expected pixels of shape (B, 1, 28, 28), got NoneType
    """


class MissingDependencyError(FoolbenchError, ImportError):
    """An optional dependency is needed; the message names the extra to install.

    Examples:
        >>> import foolbench as fb
        >>> issubclass(fb.errors.MissingDependencyError, ImportError)
        True
    """


class ConfigError(InvalidArgumentError):
    """A suite configuration (TOML) is malformed or names unknown models, defenses or methods.

    Examples:
        >>> import foolbench as fb
        >>> fb.bench.parse_config({"models": [{"zoo": "lenet-mnist"}], "methods": [{"kind": "cw"}]})
        Traceback (most recent call last):
        ...
        foolbench.errors.ConfigError: <config>: methods[0] has unknown kind 'cw'; valid kinds: ['attacks', 'gradient-ascent', 'map-elites', 'pgd', 'random', 'random-search', 'uap']
    """
