"""Small I/O helpers: atomic writes, file hashing, and where the on-disk cache lives.

Writing to a path that is a symbolic link writes through the link: the link's final target is
replaced atomically and the link stays. A path (or a link's target) that exists and is not a
regular file -- a device node, a FIFO, a socket, a folder -- is refused with one line, never
replaced by a regular file and never written into.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "cache_root",
    "check_output_dir",
    "check_output_file",
    "read_bytes_bounded",
    "read_text_bounded",
    "sha256_file",
    "short_hash",
    "write_target",
]

_REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """Root of the on-disk cache (``$HARNESS_CACHE`` or ``.cache/harness`` in the checkout):
    the result store (:mod:`harness.sources.store`) and the decompressed paper artifact
    (:mod:`harness.spec.artifact`) live under it."""
    return Path(os.environ.get("HARNESS_CACHE", _REPO_ROOT / ".cache" / "harness"))


# The most any input file (result, eval, status, protocol) may hold: the largest result file
# of the paper artifact is about 1 MB, so this leaves room and still bounds what is read.
MAX_READ_BYTES = 256 << 20


def read_bytes_bounded(
    path: str | os.PathLike[str], what: str = "file", limit: int = MAX_READ_BYTES
) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    A FIFO, device or socket (``/dev/zero``, a pipe that never ends or never opens) and a
    larger file are refused with one line naming ``path``, before anything is read; the file
    is opened non-blocking, so a FIFO cannot hang the open. A missing file raises
    ``FileNotFoundError`` and a folder ``IsADirectoryError``, as ``open`` would."""
    from harness.errors import HarnessError

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise HarnessError(
                f"{what} {path} is not a regular file (a device, FIFO or socket)",
                "remove it, or pass a regular file",
            )
        if st.st_size > limit:
            raise HarnessError(
                f"{what} {path} is {st.st_size} bytes, more than the {limit} an input may hold",
                "pass the right file (this one is far larger than any the harness writes)",
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while being read
        raise HarnessError(f"{what} {path} holds more than {limit} bytes", "pass the right file")
    return data


def read_text_bounded(
    path: str | os.PathLike[str], what: str = "file", limit: int = MAX_READ_BYTES
) -> str:
    """UTF-8 text of a regular file of at most ``limit`` bytes (see :func:`read_bytes_bounded`);
    bytes that are not UTF-8 raise ``UnicodeDecodeError``."""
    return read_bytes_bounded(path, what, limit).decode("utf-8")


def write_target(path: str | os.PathLike[str], option: str = "output") -> Path:
    """The file a write to ``path`` replaces: ``path`` itself, or a link's final target.

    Refuses (one line, naming ``path``) a target that exists and is not a regular file."""
    from harness.errors import HarnessError

    p = Path(path)
    target = Path(os.path.realpath(p)) if p.is_symlink() else p
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target
    except OSError:  # a loop of links, or a folder we may not look into: let the write say it
        return target
    if stat.S_ISDIR(st.st_mode):
        raise HarnessError(f"{option} {path} is a folder", "give a file path, e.g. out/report.json")
    if not stat.S_ISREG(st.st_mode):
        via = f" (a link to {target})" if target != p else ""
        raise HarnessError(
            f"{option} {path}{via} is not a regular file (a device, FIFO or socket)",
            "give the path of a regular file to write",
        )
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``.

    A reader never sees a partial file, and a crash leaves either the old file or none.
    """
    path = write_target(path)
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
    from harness.errors import HarnessError

    h = hashlib.sha256()
    p = Path(path)
    if p.exists() and not p.is_file() and not p.is_dir():  # a FIFO or /dev/zero never ends
        raise HarnessError(
            f"{path} is not a regular file (a device, FIFO or socket)", "pass a regular file"
        )
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_output_file(path: str | os.PathLike[str], option: str) -> None:
    """Refuse, before any work, an output file path that cannot be written (naming it)."""
    from harness.errors import HarnessError

    p = write_target(path, option)
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
        kind = "a file" if p.is_file() else "not a folder (a device, FIFO or socket)"
        raise HarnessError(f"{option} {path} is {kind}", "give a folder path")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(
            f"{option} {path}: cannot create it ({exc.strerror})", "choose a writable location"
        ) from None
    if not os.access(p, os.W_OK):
        raise HarnessError(f"{option} {path} is not writable", "choose a writable location")


def short_hash(text: str) -> str:
    """The first 8 hex digits of ``text``'s SHA-256 (cache-key parts)."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]
