"""native_bf16 / auto_precision: which precision pays off on a device, from torch's feature probes."""

from __future__ import annotations

import pytest
import torch

import foolbench as fb
from foolbench.errors import InvalidArgumentError


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"),
    [(False, False, False), (True, False, True), (False, True, True), (True, True, True)],
)
def test_cpu_bf16_units_come_from_the_cpu_probes(
    monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, expected: bool
) -> None:
    # raising=False: a torch build without the private probes gets them here (the function reads them by name)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    for device in (None, "cpu", torch.device("cpu")):
        assert fb.models.native_bf16(device) is expected
        assert fb.models.auto_precision(device) == ("bf16" if expected else "fp32")


def test_cpu_without_the_private_probes_counts_as_no_bf16_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert fb.models.native_bf16("cpu") is False and fb.models.auto_precision() == "fp32"


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_cuda_bf16_units_from_the_compute_capability(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: bool
) -> None:
    seen: list[object] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: seen.append(index) or capability)
    assert fb.models.native_bf16("cuda:1") is expected and fb.models.native_bf16("cuda") is expected
    assert seen == [1, None]  # the index picks the GPU; a bare "cuda" asks about the current one
    assert fb.models.auto_precision("cuda") == ("bf16" if expected else "fp32")
    with pytest.raises(InvalidArgumentError, match=r"device 'cuda:2' names GPU 2, but this machine has 2"):
        fb.models.native_bf16("cuda:2")


def test_no_cuda_and_other_devices_are_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert fb.models.native_bf16("cuda") is False and fb.models.auto_precision("cuda:0") == "fp32"
    assert fb.models.native_bf16("meta") is False


@pytest.mark.parametrize("device", ["tpu9", 3.5, "cuda:x"])
def test_a_bad_device_is_refused_by_name(device: object) -> None:
    for fn in (fb.models.native_bf16, fb.models.auto_precision):
        with pytest.raises(InvalidArgumentError, match="device must be a torch device"):
            fn(device)  # type: ignore[arg-type]
