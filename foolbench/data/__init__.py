"""Data that ships with foolbench, and the small training recipe used on it.

:func:`mnist_digits` gives 5,000 real MNIST digits (shipped in the package, CC BY-SA 3.0,
no extra needed).
"""

from __future__ import annotations

from foolbench.data._mnist import mnist_digits

__all__ = ["mnist_digits"]
