"""Encodings by name (for configuration files and the command line)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from foolbench.encodings._cppn import CPPNEncoding
from foolbench.encodings._direct import DirectEncoding
from foolbench.errors import InvalidArgumentError, InvalidTypeError

__all__ = ["ENCODINGS", "from_name"]

#: The encodings :func:`from_name` builds, by name.
ENCODINGS: dict[str, type[DirectEncoding | CPPNEncoding]] = {"cppn": CPPNEncoding, "direct": DirectEncoding}


def from_name(name: str, image_shape: Sequence[int], **options: Any) -> DirectEncoding | CPPNEncoding:
    """Build the encoding called ``name`` for images of ``image_shape``.

    Args:
        name: ``"direct"`` (:class:`DirectEncoding`) or ``"cppn"`` (:class:`CPPNEncoding`).
        image_shape: (C, H, W) of the images.
        **options: the encoding's keyword arguments (e.g. ``mutation_rate``, ``eta``, ``max_nodes``).

    Returns:
        The encoding.

    Raises:
        InvalidTypeError: ``name`` is not a string.
        InvalidArgumentError: an unknown name (the message lists the valid ones), an option the
            encoding does not take (the message lists those it takes), or a bad option value.

    Examples:
        >>> from foolbench.encodings import from_name
        >>> from_name("direct", (1, 28, 28), mutation_rate=0.02, eta=1.0)
        DirectEncoding(image_shape=(1, 28, 28), mutation_rate=0.02, eta=1)
        >>> from_name("gan", (1, 28, 28))
        Traceback (most recent call last):
        ...
        foolbench.errors.InvalidArgumentError: encoding name must be one of ['cppn', 'direct'], got 'gan'
    """
    if not isinstance(name, str):
        raise InvalidTypeError(f"encoding name must be a str, one of {sorted(ENCODINGS)}, got {type(name).__name__}")
    cls = ENCODINGS.get(name)
    if cls is None:
        raise InvalidArgumentError(f"encoding name must be one of {sorted(ENCODINGS)}, got {name!r}")
    params = inspect.signature(cls).parameters
    accepted = sorted(k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidArgumentError(f"{name!r} encoding has no option(s) {unknown}; valid options: {accepted}")
    return cls(image_shape, **options)
