"""Files: atomic writes, safe torch loads, PNG grids and JSON (private)."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from foolbench.errors import CheckpointError

__all__ = ["atomic_write_bytes", "load_torch", "save_grid", "save_torch", "write_json", "write_text"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    A crash at any moment leaves either the old file or the new one, never a partial file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_torch(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically ``torch.save`` an object made of tensors, numbers, strings, lists and dicts."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_torch(path: str | os.PathLike[str], *, what: str = "checkpoint") -> dict[str, Any]:
    """Load a dict saved by :func:`save_torch` with ``weights_only=True``; nothing in the file executes.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is corrupt, truncated, holds code, or is not a dict.
    """
    p = Path(path)
    if p.exists() and not p.is_file():
        raise CheckpointError(f"{what} path {str(p)!r} is not a regular file (a directory?); expected a file")
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {str(p)!r}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{what} {str(p)!r} is corrupt, truncated or not a safe torch file "
            f"(only tensors and plain data are loaded): {first}"
        ) from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what} {str(p)!r} must hold a dict, got {type(obj).__name__}")
    return obj


def save_grid(
    images: torch.Tensor,
    captions: Sequence[str],
    path: str | os.PathLike[str],
    *,
    columns: int | None = None,
    cell: int = 112,
) -> Path:
    """Save a (B, C, H, W) batch in [0, 1] as a PNG grid with a caption under each image.

    Small images are enlarged with nearest-neighbour sampling so pixels stay visible.
    """
    from PIL import Image, ImageDraw

    imgs = images.detach().float().clamp(0, 1).cpu()
    if imgs.shape[1] == 1:
        imgs = imgs.expand(-1, 3, -1, -1)
    b = imgs.shape[0]
    cols = columns or min(b, 10)
    rows = -(-b // cols)
    h, w = imgs.shape[2:]
    scale = max(1, cell // max(h, w)) if max(h, w) < cell else 1
    cw, ch = w * scale, h * scale
    caption_h = 26
    sheet = Image.new("RGB", (cols * cw, rows * (ch + caption_h)), "white")
    draw = ImageDraw.Draw(sheet)
    pixels = (imgs * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i in range(b):
        r, c = divmod(i, cols)
        tile = Image.fromarray(pixels[i]).resize((cw, ch), Image.Resampling.NEAREST)
        sheet.paste(tile, (c * cw, r * (ch + caption_h)))
        for j, line in enumerate(str(captions[i]).split("\n")[:2]):
            draw.text((c * cw + 2, r * (ch + caption_h) + ch + 1 + 12 * j), line[: max(4, cw // 6)], fill="black")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return atomic_write_bytes(out, buffer.getvalue())


def check_state(state: dict[str, Any], *, fmt: str, version: int, path: str | os.PathLike[str]) -> None:
    """Check a loaded checkpoint's format tag and version."""
    if state.get("format") != fmt:
        raise CheckpointError(f"{str(path)!r} is not a {fmt} checkpoint (format tag {state.get('format')!r})")
    if state.get("version") != version:
        raise CheckpointError(f"{str(path)!r} has checkpoint version {state.get('version')!r}, expected {version}")
