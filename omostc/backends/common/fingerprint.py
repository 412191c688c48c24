"""A model's identity for the incremental key: cheap, so checking a batch that has nothing to do
stays fast, and different when the model on disk changes.

* A local folder: the relative path, size and modification time of each of its files (at most
  ``MAX_FILES``; hidden files and folders, such as ``.cache``, skipped; linked folders and files
  followed to what they point at). No weights are read:
  updating a model in place (new weights, an edited config) changes sizes or times.
* A local file (a single ``.safetensors``): its size and modification time.
* A hub id: the id and, if the hub cache holds it, the revision its ``main`` ref resolves to
  (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``); a new
  download of the model changes it. Not in the cache: the id alone.
* Anything else (``builtin:tiny-sdxl``, whose build is fixed by its seed): the name itself.

Copying a model folder without keeping times (``cp -r``) therefore renders again, once.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MAX_FILES = 10_000


def model_fingerprint(model: str | None) -> str:
    if not model:
        return ""
    path = Path(model).expanduser()
    try:
        if path.is_dir():
            return f"dir:{_digest(_folder_entries(path))}"
        if path.is_file():
            st = path.stat()
            return f"file:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return model
    revision = _hub_revision(model)
    return f"{model}@{revision}" if revision else model


def _folder_entries(folder: Path) -> list[str]:
    entries: list[str] = []
    seen: set[tuple[int, int]] = set()  # folders walked (device, inode): a link loop is walked once
    for root, dirs, files in os.walk(folder, followlinks=True):  # a folder of links to the real folders
        try:
            st = os.stat(root)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append(f"{path.relative_to(folder).as_posix()}:{st.st_size}:{st.st_mtime_ns}")
            if len(entries) >= MAX_FILES:
                return entries
    return entries


def _digest(entries: list[str]) -> str:
    return hashlib.sha256("\n".join(entries).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _hub_revision(model: str) -> str | None:
    """The snapshot revision of hub id ``org/name`` in the local hub cache, or None."""
    parts = model.split("/")
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        return None
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if not hub:
        home = os.environ.get("HF_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                                                / "huggingface")
        hub = str(Path(home) / "hub")
    ref = Path(hub) / f"models--{parts[0]}--{parts[1]}" / "refs" / "main"
    try:
        return ref.read_text(encoding="utf-8").strip()[:64] or None
    except (OSError, UnicodeDecodeError):
        return None
