"""Output names: each input's folder under OUT (and ``compile -O``'s file), safe on every file
system, never one of omostc's own bookkeeping names, one per input, and inside OUT.

Rules (README "Output names"):

* The name is the input's file name without its suffix (``stdin`` for ``-``; a ``--from-png``
  image: the folder it is in). Path separators, control characters and ``: * ? " < > |`` become
  ``_``; a name that is empty, starts with a dot (``.``, ``..``, ``.hidden``), starts with
  ``manifest.`` (reserved for the manifest and its journal and lock files) or is a Windows device
  name (``con``, ``nul.x``, ``lpt1``) gets a leading ``_``; trailing dots and spaces become ``_``;
  a name longer than 120 bytes is cut, with a hash of the whole.
* Two inputs may not share a name. Names are compared as a case-insensitive file system does
  (``Scene`` and ``scene`` clash), after the rules above (``a:b`` and ``a_b`` clash). The input
  given first keeps the name; the later one fails, its error naming both, and the rest of the
  batch renders. An error, not a renaming: a name that depended on which other inputs are in the
  batch would move an output whenever the batch changes, and every re-run must settle.
* The same file given twice (another spelling, a symlink) is one input.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

RESERVED_PREFIX = "manifest."  # OUT/manifest.jsonl and its journal, lock, ... files
MAX_NAME_BYTES = 120
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f/\\:*?"<>|]')
_WINDOWS_DEVICES = frozenset({"con", "prn", "aux", "nul", "conin$", "conout$",
                              *(f"com{i}" for i in "123456789¹²³"), *(f"lpt{i}" for i in "123456789¹²³")})


def safe_name(stem: str) -> str:
    """``stem`` as a folder or file name that is safe everywhere (module docstring)."""
    name = _UNSAFE.sub("_", stem)
    base = name.split(".")[0].rstrip(" ").casefold()
    if not name or name.startswith(".") or name.casefold().startswith(RESERVED_PREFIX) or base in _WINDOWS_DEVICES:
        name = "_" + name
    trailing = len(name) - len(name.rstrip(". "))
    if trailing:
        name = name[:len(name) - trailing] + "_" * trailing
    if _size(name) > MAX_NAME_BYTES:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        while _size(name) > MAX_NAME_BYTES - 13:
            name = name[:-1]
        name = f"{name}-{digest}"
    return name


def _size(name: str) -> int:
    """Bytes of a name on disk (a file name that is not UTF-8 holds lone surrogates: one byte each
    on POSIX; at most three)."""
    return len(name.encode("utf-8", "surrogatepass"))


def input_name(source: str) -> str:
    """The output name of a spec or Canvas-code input."""
    return safe_name("stdin" if source == "-" else Path(source).stem)


def png_name(source: str) -> str:
    """The output name of a ``--from-png`` image: the folder it is in (``OUT/<name>/<seed>.png``),
    with ``..`` and ``.`` in its path resolved first; its own stem if it has no folder."""
    path = Path(os.path.abspath(source))
    return safe_name(path.parent.name or path.stem)


def name_key(name: str) -> str:
    """What two names must differ in to be two folders everywhere (case-insensitive, NFC)."""
    return unicodedata.normalize("NFC", name).casefold()


def identity(source: str) -> object:
    """The file an input is, whatever its spelling: the same file by two names is one input."""
    if source == "-":
        return source
    try:
        st = os.stat(source)
        return st.st_dev, st.st_ino
    except (OSError, ValueError):
        return os.path.realpath(source)


def resolves_inside(out_dir: Path, name: str) -> bool:
    """``OUT/name`` is a plain child of OUT: no link that leads elsewhere, no ``..``."""
    real_out = os.path.realpath(out_dir)
    return os.path.realpath(out_dir / name) == os.path.join(real_out, name)


class Claims:
    """Which input owns each output name: a spec (or Canvas code) owns its whole folder, from the
    moment it is given (whether it loads or not, so which input keeps a name depends on the
    command line alone); a re-rendered PNG owns its name and seed."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.outputs: dict[tuple[str, int], str] = {}

    def clash(self, source: str, name: str, seeds: Sequence[int] = (), *, whole: bool) -> str | None:
        """The input that already owns ``name`` (or, for a PNG, one of its ``seeds`` there), or
        None after claiming them for ``source``."""
        key = name_key(name)
        owner = self.names.get(key)
        if owner is None and whole:
            owner = next((o for (k, _), o in self.outputs.items() if k == key), None)
        if owner is None and not whole:
            owner = next((self.outputs[(key, s)] for s in seeds if (key, s) in self.outputs), None)
        if owner is not None and owner != source:
            return owner
        if whole:
            self.names[key] = source
        for seed in seeds:
            self.outputs[(key, seed)] = source
        return None


def clash_message(name: str, other: str, where: str | None = None) -> str:
    return (f"its output name {name!r} ({where or 'in the output folder'}) is already that of {other}, given earlier: "
            "rename one of them or write them into different folders")
