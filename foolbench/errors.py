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
    """Base class of every exception raised by foolbench."""


class InvalidArgumentError(FoolbenchError, ValueError):
    """An argument has the right type but a wrong value, shape or range."""


class InvalidTypeError(FoolbenchError, TypeError):
    """An argument has the wrong type or dtype."""


class ModelOutputError(FoolbenchError, ValueError):
    """A wrapped model returned output of the wrong shape or non-finite values."""


class CheckpointError(FoolbenchError, ValueError):
    """A checkpoint or archive file is corrupt, foreign or from another configuration."""


class MissingDependencyError(FoolbenchError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""


class ConfigError(InvalidArgumentError):
    """A suite configuration (TOML) is malformed or names unknown models, defenses or methods."""
