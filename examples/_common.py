"""Shared by the examples: ``--fast`` (small budgets, for CI) and ``--out``."""

from __future__ import annotations

import argparse
from pathlib import Path


def parse(description: str) -> tuple[bool, Path]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--fast", action="store_true", help="small budgets (CI runs every example this way)")
    parser.add_argument("--out", default="examples/out", help="folder for the figure")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return bool(args.fast), out
