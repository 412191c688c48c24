"""omostc's cache folder, and things built into it once (atomically, safe under concurrency)."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

# A build temporary whose builder cannot be asked (another host, or a name of omostc before the
# builder was recorded in it) is stale once untouched this long: a build takes seconds.
STALE_BUILD_SECONDS = 3600


def cache_dir() -> Path:
    """$OMOSTC_CACHE, else $XDG_CACHE_HOME/omostc, else ~/.cache/omostc."""
    if os.environ.get("OMOSTC_CACHE"):
        return Path(os.environ["OMOSTC_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "omostc"


def pid_alive(pid: int) -> bool | None:
    """Whether process ``pid`` of this host runs; None where that cannot be asked safely
    (Windows: its ``os.kill`` ends the process)."""
    if os.name == "nt":
        return None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return None
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has exited but not been waited for (killed, its parent not told yet): it
    writes nothing more. Known on Linux (``/proc``); elsewhere assumed not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def abandoned(path: Path, pid: int | None, host: str | None = None, *, bound: float = STALE_BUILD_SECONDS) -> bool:
    """A temporary left by a writer that is gone: its process (on this host) is dead, or, where
    that cannot be known, it has not been touched for ``bound`` seconds. A live writer's is kept."""
    alive = pid_alive(pid) if pid is not None and host in (None, _host()) else None
    if alive is not None:
        return not alive
    try:
        return time.time() - path.stat().st_mtime > bound
    except OSError:
        return False


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:64] or "host"


def built_once(name: str, build) -> Path:
    """``cache_dir()/name``, built by ``build(folder)`` the first time and moved into place whole.
    Builds run in ``.NAME-HOST-PID-XXXX`` folders; those of a builder that died (killed in the
    middle) are removed by the next build, never those of a build still running."""
    target = cache_dir() / name
    if not (target / "model_index.json").is_file():
        import shutil
        import tempfile

        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_builds(target.parent, name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-{_host()}-{os.getpid()}-", dir=target.parent))
        try:
            build(tmp)
            os.replace(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def remove_stale_builds(folder: Path, name: str) -> None:
    """The build temporaries of ``name`` in ``folder`` whose builder is gone."""
    import shutil

    prefix = f".{name}-"
    for path in folder.iterdir():
        if not path.name.startswith(prefix) or not path.is_dir() or path.is_symlink():
            continue
        match = re.fullmatch(r"(.+)-(\d+)-[^-]+", path.name[len(prefix):])
        pid, host = (int(match.group(2)), match.group(1)) if match else (None, None)
        if abandoned(path, pid, host):
            shutil.rmtree(path, ignore_errors=True)
