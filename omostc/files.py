"""Reading inputs with clear errors, and writing outputs atomically."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from omostc.diagnostics import Diagnostic, InputError

STDIN = "-"


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file (``-`` is standard input); a BOM is dropped."""
    name = str(path)
    try:
        data = sys.stdin.buffer.read() if name == STDIN else Path(path).read_bytes()
    except OSError as exc:
        raise InputError([Diagnostic("error", f"cannot read: {exc.strerror or exc}", file=name)]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError([Diagnostic("error", f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                                     file=name, line=line)]) from None
    return text.removeprefix("\ufeff")


@contextmanager
def atomic_path(path: str | os.PathLike):
    """A temporary name beside ``path`` to write to; on success it replaces ``path`` in one step.

    Readers see the old file or the whole new one, never a part; on failure nothing is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(_temporary_name(path.name))
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename in (str(tmp), tmp):  # name what the user asked for, not the temporary file
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _temporary_name(name: str) -> str:
    """A hidden sibling name for ``name``, within the 255 bytes file systems allow."""
    if len(name.encode("utf-8")) > 200:
        import hashlib

        short = name.encode("utf-8")[:100].decode("utf-8", "ignore")
        name = f"{short}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:12]}"
    return f".{name}.{os.getpid()}.tmp"


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never a part of it."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
