"""omostc's cache folder, and things built into it once (atomically, safe under concurrency)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$OMOSTC_CACHE, else $XDG_CACHE_HOME/omostc, else ~/.cache/omostc."""
    if os.environ.get("OMOSTC_CACHE"):
        return Path(os.environ["OMOSTC_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "omostc"


def built_once(name: str, build) -> Path:
    """``cache_dir()/name``, built by ``build(folder)`` the first time and moved into place whole."""
    target = cache_dir() / name
    if not (target / "model_index.json").is_file():
        import shutil
        import tempfile

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return target
