"""Keep freed memory for reuse on glibc systems (a CPU speed-up for large, repeated tensors)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

from foolbench import _checks
from foolbench.errors import InvalidArgumentError

__all__ = ["tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_MAX = 32 * 2**20  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit systems


def tune_malloc(*, mmap_threshold: int = _MMAP_MAX, trim_threshold: int = 2**30) -> bool:
    """Make glibc's allocator keep freed tensor memory for the next allocation of this process.

    By default glibc serves each large block (a rendered batch, a layer's activations) with a fresh
    ``mmap`` and returns it on free, so the next forward pass page-faults the same memory in again:
    on the 2-core CPU a MAP-Elites + CPPN search on EfficientNet-Lite0 took about 3,500 page faults
    per evaluation, 0 with this call (``benchmarks/bench_malloc.py``: best 1.36x the evaluations/s). The price is that the process keeps its peak memory. It changes
    process-wide settings, so foolbench never calls it on import: the command line and the
    benchmarks call it; call it once at the start of your own CPU script. Setting the environment
    variable ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824``
    before Python starts has the same effect.

    Args:
        mmap_threshold: blocks of at least this many bytes still get their own ``mmap`` (at most
            32 MiB, glibc's limit).
        trim_threshold: free memory at the top of the heap kept rather than returned to the system.

    Returns:
        True if the settings were applied (Linux with glibc), False elsewhere (nothing changed).

    Raises:
        InvalidTypeError: a threshold that is not an int.
        InvalidArgumentError: a threshold below 1, ``mmap_threshold`` above 32 MiB or ``trim_threshold``
            from 2**31 on.

    Examples:
        >>> import foolbench as fb
        >>> fb.tune_malloc() in (True, False)
        True
    """
    if _checks.positive_int("mmap_threshold", mmap_threshold) > _MMAP_MAX:
        raise InvalidArgumentError(f"mmap_threshold must be at most {_MMAP_MAX} (32 MiB), got {mmap_threshold}")
    if _checks.positive_int("trim_threshold", trim_threshold) > 2**31 - 1:
        raise InvalidArgumentError(f"trim_threshold must be below 2**31, got {trim_threshold}")
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
