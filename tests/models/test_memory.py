"""Evaluations are chunked: a large probs() call keeps peak memory bounded by the chunk, not the batch."""

from __future__ import annotations

import subprocess
import sys

import pytest

resource = pytest.importorskip("resource")

CODE = """
import resource, torch, foolbench as fb
torch.set_num_threads(1)
clf = fb.models.lenet_mnist(batch_size=BATCH)
x = torch.rand(20000, 1, 28, 28)  # 63 MB of input
clf.probs(x[:10])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
p = clf.probs(x)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert p.shape == (20000, 10)
print((peak - base) / 1024)
"""


def peak_mb(batch: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CODE.replace("BATCH", str(batch))], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def test_large_probs_call_stays_bounded() -> None:
    # unchunked, LeNet's first conv alone would hold 20,000 x 20 x 24 x 24 floats = 922 MB
    chunked = peak_mb(256)
    assert chunked < 250, f"peak grew by {chunked:.0f} MB"
    whole = peak_mb(20000)
    assert whole > 2 * chunked, (whole, chunked)  # the bound comes from the chunking
