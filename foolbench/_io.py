"""Files: atomic writes, safe torch loads, PNG grids and JSON (private)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from foolbench.errors import CheckpointError, FoolbenchError, InvalidArgumentError

__all__ = [
    "SUMMARY_SCHEMA",
    "FolderBusyError",
    "atomic_write_bytes",
    "exact_number",
    "load_torch",
    "locked_folder",
    "out_folder",
    "read_summary",
    "save_grid",
    "save_torch",
    "summary",
    "write_json",
    "write_text",
]

SUMMARY_SCHEMA = "foolbench.summary/1"
LOCK_NAME = ".foolbench.lock"


class FolderBusyError(FoolbenchError):
    """Another foolbench process holds the output folder's lock."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (best effort: not every system can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, rename it over ``path``, fsync the folder.

    A crash at any moment leaves either the old file or the new one, never a partial file.
    The file gets the usual permissions (0o666 less the umask), like ``open(path, "w")``.

    Raises:
        OSError: the folder cannot be created or written (full disk, read-only file system),
            or ``path`` is a folder.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        raise IsADirectoryError(21, "a folder is in the way of an output file", str(target))
    # the name's first 40 characters: the whole of a long name (240+) would pass the file system's 255
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:40]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)
    return target


def out_folder(out: Any, *, name: str = "out") -> Path:
    """Check an output folder argument and create the folder.

    Raises:
        InvalidArgumentError: ``out`` is empty, is a file, or lies under a file.
        OSError: the folder cannot be created (permissions, read-only or full file system).
    """
    if not isinstance(out, (str, os.PathLike)) or not str(out).strip():
        raise InvalidArgumentError(f"{name} must be a folder path, got {out!r}")
    folder = Path(out)
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            where = "is" if parent == folder else f"lies under {str(parent)!r}, which is"
            raise InvalidArgumentError(f"{name} must be a folder, got {str(folder)!r}: it {where} a file")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def locked_folder(folder: str | os.PathLike[str], *, name: str = "out") -> Iterator[Path]:
    """Hold an advisory lock on ``folder`` (a ``.foolbench.lock`` file in it) while the block runs.

    A second foolbench process that asks for the same folder is refused at once instead of
    overwriting the first one's files. The lock goes with the process (also on SIGKILL).
    Where ``fcntl`` is missing (Windows) no lock is taken.

    Raises:
        FolderBusyError: another process holds the lock.
    """
    path = Path(folder)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield path
        return
    with open(path / LOCK_NAME, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(
                f"{name} {str(path)!r} is in use by another foolbench run; wait for it or choose another folder"
            ) from None
        try:
            yield path
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def summary(command: str, settings: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The one shape of every ``summary.json``: schema tag, command, settings, results, versions.

    ``versions`` records what produced the results: foolbench, torch and Python versions and
    torch's intra-op thread count (float sums, hence the last digits, can change with it).

    Examples:
        >>> s = summary("demo", {"seed": 0}, {"evaluations": 64})
        >>> list(s), s["schema"], sorted(s["versions"])
        (['schema', 'command', 'settings', 'results', 'versions'], 'foolbench.summary/1', ['foolbench', 'python', 'torch', 'torch_threads'])
    """
    return {
        "schema": SUMMARY_SCHEMA,
        "command": command,
        "settings": settings,
        "results": results,
        "versions": {
            "foolbench": _foolbench_version(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
        },
    }


def exact_number(x: float) -> str:
    """``x`` as short text that reads back as ``x`` exactly: ``f"{x:g}"`` where that does, else ``repr(x)``.

    For keys and settings text: ``:g`` alone keeps six digits, so nearby numbers (8/255 and 0.0313725)
    would share a text; numbers ``:g`` writes exactly keep the text they always had.

    Examples:
        >>> exact_number(0.99), exact_number(0.0), exact_number(8 / 255), exact_number(0.9999999)
        ('0.99', '0', '0.03137254901960784', '0.9999999')
    """
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def _foolbench_version() -> str:
    module = sys.modules.get("foolbench")
    return str(getattr(module, "__version__", "unknown"))


def read_summary(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A ``summary.json`` written by :func:`summary`, or None when it is missing, unreadable or another shape."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) and obj.get("schema") == SUMMARY_SCHEMA else None


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

    Small images are enlarged with nearest-neighbour sampling so pixels stay visible. A batch with
    values outside [0, 1] (a classifier's bounds such as 0-255 or -1..1) is shown scaled to its own
    range, min black and max white.

    Raises:
        InvalidArgumentError: ``images`` is not a (B, 1 or 3, H, W) tensor with B >= 1, or there is not one
            caption per image, or ``columns`` is not a positive int.
    """
    from PIL import Image, ImageDraw

    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InvalidArgumentError(f"images must be a (B, 1 or 3, H, W) tensor, got {got}")
    if isinstance(captions, str) or len(captions) != images.shape[0]:
        count = "a string" if isinstance(captions, str) else f"{len(captions)}"
        raise InvalidArgumentError(f"captions must hold one caption per image ({images.shape[0]}), got {count}")
    if columns is not None and (isinstance(columns, bool) or not isinstance(columns, int) or columns < 1):
        raise InvalidArgumentError(f"columns must be an int >= 1 or None, got {columns!r}")
    if not images.shape[0]:
        raise InvalidArgumentError("images must hold at least one image, got an empty batch")
    imgs = images.detach().float().cpu()
    finite = imgs[torch.isfinite(imgs)]  # one NaN pixel must not decide the scale of every image
    lo, hi = (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 1.0)
    if lo < 0 or hi > 1:  # bounds other than [0, 1]: clamping would show 0-255 images all white
        imgs = (imgs - lo) / max(hi - lo, 1e-12)
    imgs = imgs.nan_to_num(nan=0.0).clamp(0, 1)
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
