"""Small I/O helpers: atomic writes and file hashing."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_output_dir",
    "check_output_file",
    "sha256_file",
]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``.

    A reader never sees a partial file, and a crash leaves either the old file or none.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> Path:
    """Atomically write ``obj`` as JSON (UTF-8, non-ASCII kept, NaN refused)."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False)
    # A lone surrogate (possible in a model's decoded text) becomes its JSON escape \udXXX,
    # which reads back as the same string; everything else is plain UTF-8.
    return atomic_write_bytes(path, (text + "\n").encode("utf-8", errors="backslashreplace"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_output_file(path: str | os.PathLike[str], option: str) -> None:
    """Refuse, before any work, an output file path that cannot be written (naming it)."""
    from harness.errors import HarnessError

    p = Path(path)
    if p.is_dir():
        raise HarnessError(f"{option} {path} is a folder", "give a file path, e.g. out/report.json")
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(
            f"{option} {path}: cannot create its folder ({exc.strerror})",
            "choose a writable location",
        ) from None
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise HarnessError(f"{option} {path} is not writable", "choose a writable location")


def check_output_dir(path: str | os.PathLike[str], option: str) -> None:
    """Refuse, before any work, an output folder that cannot be created or written."""
    from harness.errors import HarnessError

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise HarnessError(f"{option} {path} is a file", "give a folder path")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(
            f"{option} {path}: cannot create it ({exc.strerror})", "choose a writable location"
        ) from None
    if not os.access(p, os.W_OK):
        raise HarnessError(f"{option} {path} is not writable", "choose a writable location")
