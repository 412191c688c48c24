"""Reading inputs with clear errors, and writing outputs atomically."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from omostc.diagnostics import Diagnostic, InputError

STDIN = "-"
MAX_INPUT_BYTES = 8 * 1024 * 1024  # an input file or standard input; larger ones are refused unread
_CHUNK = 1024 * 1024


def read_text(path: str | os.PathLike, *, limit: int = MAX_INPUT_BYTES) -> str:
    """A UTF-8 text file (``-`` is standard input); a BOM is dropped.

    At most ``limit`` + 1 bytes are ever read, so a huge file, ``/dev/zero`` or an endless pipe
    costs no more than the limit; anything longer is refused as "larger than" it. A UTF-16 or
    UTF-32 file (as PowerShell's ``>`` writes) is named as such rather than "not UTF-8".
    """
    name = str(path)
    what = "standard input" if name == STDIN else "the file"
    try:
        if name == STDIN:
            data = _read_at_most(sys.stdin.buffer, limit + 1)
        else:
            with open(path, "rb") as fh:
                data = _read_at_most(fh, limit + 1)
    except OSError as exc:
        raise InputError([Diagnostic("error", f"cannot read: {exc.strerror or exc}", file=name)]) from None
    if len(data) > limit:
        raise InputError([Diagnostic("error", f"{what} is larger than {_size(limit)}, the limit for an input",
                                     file=name)])
    wide = wide_encoding(data)
    if wide is not None:
        raise InputError([Diagnostic("error", f"{'this file' if what == 'the file' else what} is {wide}; save it as "
                                     "UTF-8 (in PowerShell: `... | Out-File -Encoding utf8`)", file=name)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError([Diagnostic("error", f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                                     file=name, line=line)]) from None
    return text.removeprefix("\ufeff")


def _read_at_most(stream, size: int) -> bytes:
    """Up to ``size`` bytes of a binary stream, read in chunks (a pipe may return less per read)."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        part = stream.read(min(_CHUNK, size - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n:,} bytes"


_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32", "little-endian"), (b"\x00\x00\xfe\xff", "UTF-32", "big-endian"),
         (b"\xff\xfe", "UTF-16", "little-endian"), (b"\xfe\xff", "UTF-16", "big-endian"))


def wide_encoding(data: bytes) -> str | None:
    """"UTF-16 (little-endian, ...)" when ``data`` is UTF-16 or UTF-32 text, else None: by its
    byte-order mark, or without one by the NUL bytes of mostly-ASCII text (every second byte
    for UTF-16, three of every four for UTF-32)."""
    for bom, name, order in _BOMS:
        if data.startswith(bom):
            return f"{name} ({order}, with a byte-order mark)"
    head = data[:4096]
    if b"\x00" not in head:
        return None
    for width, name in ((4, "UTF-32"), (2, "UTF-16")):
        units = len(head) // width
        if units < 4:
            continue
        nul = [head[i:units * width:width].count(0) / units for i in range(width)]
        for order, text_at in (("little-endian", 0), ("big-endian", width - 1)):
            zeros = [f for i, f in enumerate(nul) if i != text_at]
            # ASCII characters leave the byte at text_at set and zero the rest; others may set more.
            if nul[text_at] < 0.05 and min(zeros) > 0.5 and max(zeros) > (0.9 if width == 4 else 0.5):
                return f"{name} ({order}, without a byte-order mark)"
    return None


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
