"""OUT's bookkeeping: ``manifest.jsonl``, the journal that makes it cheap, and the lock on OUT.

* ``manifest.jsonl`` holds one row (an ``ItemResult``) per (name, seed): what users read.
* During a batch each result is appended to ``OUT/.manifest.journal`` as one line (rendered and
  failed rows fsynced), so an item costs one row written, however large the manifest is; when the
  batch ends the rows are compacted into ``manifest.jsonl`` (written whole and renamed into
  place) and the journal is removed.
* Safe to kill at any moment: a killed batch leaves the last ``manifest.jsonl`` whole and the
  journal; the next batch into OUT folds the journal in (a half-written last line is dropped)
  before it appends anything. Folding is idempotent (the last row for a key wins), so a kill
  between the rename and the journal's removal duplicates nothing.
* One batch at a time: a batch holds an exclusive lock on ``OUT/.omostc.lock`` (``flock``) from
  reading the rows to compacting them; a second batch into the same OUT waits, saying so,
  until the first ends (two writers each rewriting the manifest lost rows).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omostc.batch.outputs import KEY_CHUNK, text_chunks
from omostc.diagnostics import OmostcError
from omostc.files import write_text_atomic

MANIFEST = "manifest.jsonl"
JOURNAL = ".manifest.journal"
LOCK = ".omostc.lock"
RESERVED = (MANIFEST, JOURNAL, LOCK)  # names in OUT that are not outputs
STATUSES = ("rendered", "skipped", "failed")

Key = tuple[str, "int | None"]


@dataclass
class ItemResult:
    """One row of the manifest (and one ``item`` event of the JSON log): an item, or with
    ``seed`` None an input that failed as a whole (it did not load, or its settings break a rule)."""

    name: str
    source: str
    seed: int | None
    status: str  # rendered | skipped | failed
    output: str | None = None
    spec_hash: str | None = None
    settings_hash: str | None = None
    seconds: float = 0.0
    error: str | None = None
    finished: float = field(default_factory=time.time)
    warnings: list[str] = field(default_factory=list)  # of lowering the scene for the backend (tokens cut, ...)

    def row(self) -> dict:
        return asdict(self)


def _line(row: dict) -> bytes:
    # UTF-8 always: a lone surrogate (a file name that is not UTF-8) becomes its JSON escape
    # (\\udce9), which reads back as the same string
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")


def read_rows(data: bytes, into: dict[Key, dict]) -> None:
    """Rows of manifest or journal text into ``into``, the last for a key winning. A line that is
    not UTF-8, not JSON, or not a row (foreign, damaged, or half-written by a killed batch) is
    skipped; the next compaction drops it."""
    for raw in data.splitlines():
        try:
            row = json.loads(raw.decode("utf-8"))
            key = (row["name"], row.get("seed"))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if not isinstance(key[0], str) or not (key[1] is None or type(key[1]) is int):
            continue
        if key[1] is not None:
            _drop_failure_of(into, key[0], row.get("source"))  # the input loads now: its failure is history
        into[key] = row


def _drop_failure_of(rows: dict[Key, dict], name: str, source) -> None:
    """Remove the input-level failure row (seed None) of ``name`` if the same input made it: a
    failure of another input with that name (two inputs clashing on one output name) stays."""
    failure = rows.get((name, None))
    if failure is not None and failure.get("source") == source:
        del rows[(name, None)]


class Manifest:
    """OUT's rows for one batch, with OUT locked: ``record`` appends to the journal, ``close``
    compacts into ``manifest.jsonl``. Use as a context manager (the lock is released, and the
    manifest compacted, however the batch ends). ``wait`` hears why opening waits; ``write=False``
    (a dry run) reads only: nothing in OUT is created or changed."""

    def __init__(self, out_dir: str | os.PathLike, *, wait: Callable[[str], None] | None = None, write: bool = True):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / MANIFEST
        self.journal = self.out_dir / JOURNAL
        self.write = write
        self.rows: dict[Key, dict] = {}
        self._fd: int | None = None
        self._lock: int | None = None
        self._changed = False
        if write:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for part in (self.path, self.journal):
                if part.exists() and not part.is_file():
                    raise OmostcError(f"{part.name} is not a file: OUT's rows are written there; move it away",
                                      file=str(part))
        if self.out_dir.is_dir():
            self._lock = lock(self.out_dir / LOCK, wait, shared=not write)
        try:
            for part in (self.path, self.journal):
                if part.is_file():
                    read_rows(part.read_bytes(), self.rows)
            if write and self.journal.exists():  # a killed batch's: fold it in before appending
                self.compact()
        except BaseException:
            self._release()
            raise

    def record(self, result: ItemResult) -> None:
        row = result.row()
        key = (result.name, result.seed)
        if result.seed is not None:
            _drop_failure_of(self.rows, result.name, row.get("source"))
        self.rows[key] = row
        self._append(_line(row), durable=result.status != "skipped")

    def forget(self, keys: Iterable[Key]) -> None:
        """Drop rows (``--prune``): written at ``close``, the journal cannot say "removed"."""
        for key in keys:
            self.rows.pop(key, None)
            self._changed = True

    def _append(self, line: bytes, durable: bool) -> None:
        """One row at the journal's end. A skipped row is not fsynced: lost to a power cut, it
        leaves the row before it, which still describes the same PNG."""
        self._changed = True
        if not self.write:
            return
        if self._fd is None:
            self._fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view):]
        if durable:
            os.fsync(self._fd)

    def compact(self) -> None:
        """The rows into ``manifest.jsonl`` (whole, then renamed into place), then the journal
        removed: killed in between, the next batch folds the same rows in again."""
        write_text_atomic(self.path, b"".join(_line(r) for r in self.rows.values()).decode("utf-8"))
        _sync_folder(self.out_dir)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.journal.unlink(missing_ok=True)
        self._changed = False

    def close(self) -> None:
        try:
            if self.write and (self._changed or not self.path.exists()):
                self.compact()
        finally:
            self._release()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform can)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def lock(path: Path, wait: Callable[[str], None] | None = None, shared: bool = False) -> int | None:
    """Hold ``path``'s lock (released when the returned descriptor closes). Taken at once if it
    is free; otherwise ``wait`` is told who holds it and the call blocks until it is released."""
    try:
        fd = os.open(path, (os.O_RDONLY if shared else os.O_RDWR | os.O_CREAT) | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except FileNotFoundError:  # read only, and no batch ever wrote here: nothing to wait for
        return None
    except OSError as exc:
        if not path.is_symlink():
            raise
        raise OmostcError("the lock file is a link: omostc never writes through one (remove it)",
                          file=str(path)) from exc
    try:
        try:
            if not _try_lock(fd, shared):
                if wait is not None:
                    wait(f"{path.parent}: another omostc batch{_holder(fd)} is writing here; waiting for it to finish")
                _block_lock(fd, shared)
        except OSError as exc:  # a file system without locks (some network ones)
            raise OmostcError(f"cannot lock the output folder ({exc.strerror or exc}): its file system has no file "
                              "locks; give each batch an output folder of its own", file=str(path)) from None
        if not shared:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
    except BaseException:
        os.close(fd)
        raise
    return fd


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (process {pid})" if pid.isdigit() else ""


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int, shared: bool) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _block_lock(fd: int, shared: bool) -> None:
        while not _try_lock(fd, shared):
            time.sleep(0.2)
else:
    import fcntl

    def _try_lock(fd: int, shared: bool) -> bool:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _block_lock(fd: int, shared: bool) -> None:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)


@dataclass
class Removed:
    """A row ``--prune`` removed (or would), and the PNG it recorded if that went too."""

    name: str
    seed: int | None
    source: str | None
    output: str | None  # the PNG removed; None when only the row went (no PNG, or not one omostc made in OUT)


def prune(manifest: Manifest, current: set[Key], kept_names: set[str], outputs: set[Path],
          dry_run: bool = False) -> list[Removed]:
    """Remove the rows not produced by the current inputs (``current``; every row of a name in
    ``kept_names``, inputs that did not load this time, stays) and the PNGs they recorded: only
    a regular file inside OUT that omostc made (it carries a key) and that no current item
    writes (``outputs``). Folders left empty are removed. With ``dry_run`` nothing changes."""
    root = manifest.out_dir.resolve()
    protected = {p.resolve() for p in outputs}
    removed = []
    for key, row in list(manifest.rows.items()):
        if key in current or key[0] in kept_names:
            continue
        png = _recorded_png(row, root, protected)
        if not dry_run and png is not None:
            try:
                png.unlink()
            except OSError:
                png = None
            else:
                _remove_empty(png.parent, root)
        removed.append(Removed(key[0], key[1], row.get("source"), str(png) if png is not None else None))
    if not dry_run:
        manifest.forget((r.name, r.seed) for r in removed)
    return removed


def prune_stale(manifest: Manifest, items: Iterable, failures: Iterable[ItemResult],
                dry_run: bool = False) -> list[Removed]:
    """``prune`` for a batch: its items (``BatchItem``) are current, and so is everything recorded
    under the name of an input that failed to load this time (its pictures are not stale: it is
    still in the batch, broken for now)."""
    items = list(items)
    return prune(manifest, {(i.name, i.seed) for i in items}, {f.name for f in failures},
                 {i.output(manifest.out_dir) for i in items}, dry_run=dry_run)


def _recorded_png(row: dict, root: Path, protected: set[Path]) -> Path | None:
    """The PNG a row names, if omostc made it and it lies inside OUT (``root``, resolved). A
    relative name was relative to the folder that batch ran in: if it does not lead into OUT
    from here, its tails are tried inside OUT (``out/a/1.png``: ``OUT/a/1.png``, ``OUT/1.png``)."""
    output = row.get("output")
    if not isinstance(output, str) or not output or "\0" in output:
        return None
    path = Path(output)
    candidates = [path] if path.is_absolute() else [path, *(root.joinpath(*path.parts[i:])
                                                           for i in range(1, len(path.parts)))]
    for candidate in candidates:
        found = _omostc_png(candidate, root, protected)
        if found is not None:
            return found
    return None


def _omostc_png(path: Path, root: Path, protected: set[Path]) -> Path | None:
    try:
        if path.is_symlink() or not path.is_file():
            return None
        resolved = path.resolve()
    except (OSError, ValueError):
        return None
    if not resolved.is_relative_to(root) or resolved in protected:
        return None
    if resolved.name in RESERVED or resolved.suffix.lower() != ".png":
        return None
    try:
        if KEY_CHUNK not in text_chunks(resolved):
            return None
    except (OmostcError, OSError):
        return None
    return resolved


def _remove_empty(folder: Path, root: Path) -> None:
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
