"""What the device computes natively: whether bfloat16 scoring is worth it here."""

from __future__ import annotations

from typing import Any

import torch

from foolbench.errors import InvalidArgumentError


def device_type(device: torch.device | str | None) -> tuple[str, int | None]:
    """The type and index of a device name, whether or not this machine has that device.

    Args:
        device: a torch device or its name (``None``: the CPU).

    Returns:
        ``(type, index)``, e.g. ``("cuda", 1)``; the index is ``None`` when the name gives none.

    Raises:
        InvalidArgumentError: ``device`` is not a device name.
    """
    try:
        dev = torch.device("cpu") if device is None else torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise InvalidArgumentError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from None
    return dev.type, dev.index


def native_bf16(device: torch.device | str | None = None) -> bool:
    """Whether ``device`` has bfloat16 arithmetic units, so that ``precision="bf16"`` can pay off.

    Without them autocast emulates bfloat16 and is slower than float32: on a 2-core Xeon without
    AVX512-BF16 or AMX, EfficientNet-Lite0 scored 51 images/s in bf16 against 85 in float32
    (``benchmarks/bench_models.py``), where a CPU with AVX512-BF16 gave 172 against 99.

    - CPU: AVX512-BF16 or AMX tiles, as torch's CPU feature probes (``torch.cpu``) report them;
      ``False`` with a torch build that lacks those probes, and on CPUs they do not cover (ARM);
    - CUDA: a GPU with bfloat16 tensor cores (compute capability 8.0 or newer: A100, H100, H200...),
      without counting emulation; ``False`` when CUDA is absent;
    - any other device type: ``False`` (not known to this function).

    Args:
        device: a torch device or its name (``None``: the CPU). For CUDA the index picks the GPU
            (``"cuda"``: the current one).

    Returns:
        True when bfloat16 runs on dedicated units.

    Raises:
        InvalidArgumentError: ``device`` is not a device name, or names a GPU index this machine
            lacks.

    Examples:
        >>> import foolbench as fb
        >>> isinstance(fb.models.native_bf16("cpu"), bool)
        True
    """
    kind, index = device_type(device)
    if kind == "cpu":
        cpu: Any = torch.cpu
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private probes: absent means unknown
        return any(bool(getattr(cpu, name, lambda: False)()) for name in probes)
    if kind == "cuda":
        if not torch.cuda.is_available():
            return False
        if index is not None and index >= torch.cuda.device_count():
            raise InvalidArgumentError(
                f"device {str(device)!r} names GPU {index}, but this machine has {torch.cuda.device_count()}"
            )
        major, _ = torch.cuda.get_device_capability(index)
        return major >= 8
    return False


def auto_precision(device: torch.device | str | None = None) -> str:
    """``"bf16"`` where :func:`native_bf16` says the device computes it natively, else ``"fp32"``.

    What ``precision="auto"`` means in :func:`foolbench.search.run_evolution` and ``foolbench
    evolve --precision auto``.

    Args:
        device: a torch device or its name (``None``: the CPU).

    Returns:
        ``"bf16"`` or ``"fp32"``.

    Raises:
        InvalidArgumentError: ``device`` is not a device name.

    Examples:
        >>> import foolbench as fb
        >>> fb.models.auto_precision("cpu") == ("bf16" if fb.models.native_bf16("cpu") else "fp32")
        True
    """
    return "bf16" if native_bf16(device) else "fp32"
