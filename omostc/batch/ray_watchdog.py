"""A local Ray instance does not outlive the omostc process that started it.

Ray ties its head processes (GCS server, raylet) to the driver, but the raylet's agents
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``, about 170 MB) survive a ``kill -9`` of the
driver for good. So when omostc starts a local instance it also starts this watchdog: a small
process of its own (standard library only, run by path, in its own session so that a signal to
the driver's process group leaves it to clean up) that holds the read end of a pipe from the
driver. While the driver lives the watchdog keeps a list of the instance's processes (those Ray
started and everything below them); when the pipe closes (the driver ended, however it ended)
it kills those of them still alive. A process is known by its pid and its start time, so a pid
reused by an unrelated process is never touched. A cluster omostc did not start gets no watchdog.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

REFRESH_S = 0.5  # how often the watchdog lists the instance's processes while the driver lives

Processes = dict[int, str]  # pid -> its start time (as the system gives it)


def process_table() -> dict[int, tuple[int, str]] | None:
    """Every process: pid -> (parent pid, start time); None where neither /proc nor psutil is there."""
    proc = Path("/proc")
    if (proc / "self" / "stat").exists():
        table = {}
        for entry in proc.iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue  # gone meanwhile
                if fields[0] != "Z":  # a zombie is dead already
                    table[int(entry.name)] = (int(fields[1]), fields[19])
        return table
    try:
        import psutil
    except ImportError:
        return None
    table = {}
    for p in psutil.process_iter(["ppid", "create_time", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE:
            table[p.pid] = (p.info["ppid"] or 0, repr(p.info["create_time"]))
    return table


def with_descendants(known: Processes, table: dict[int, tuple[int, str]]) -> Processes:
    """``known``, and every live process below one of them that is still the process it was."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = dict(known)
    todo = [pid for pid, start in known.items() if table.get(pid, (0, None))[1] == start]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = table[child][1]
                todo.append(child)
    return found


def kill_survivors(known: Processes, table: dict[int, tuple[int, str]]) -> None:
    for pid, start in known.items():
        if table.get(pid, (0, None))[1] == start and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass  # gone meanwhile, or not ours to kill


def children_of(pid: int) -> set[int] | None:
    table = process_table()
    return None if table is None else {child for child, (ppid, _) in table.items() if ppid == pid}


def start_watchdog(before: set[int] | None) -> subprocess.Popen | None:
    """Watch the processes this process started since ``before`` (its children then) and all
    below them; the watchdog ends, killing them, when the returned process's stdin closes (call
    ``stop_watchdog``) or this process dies. None where processes cannot be listed."""
    table = process_table()
    if before is None or table is None:
        return None
    started = {pid: start for pid, (ppid, start) in table.items() if ppid == os.getpid() and pid not in before}
    known = with_descendants(started, table)
    if not known:
        return None
    args = [sys.executable, "-I", str(Path(__file__).resolve()), *(f"{pid}:{start}" for pid, start in known.items())]
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


def stop_watchdog(watchdog: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Close the watchdog's pipe: it kills what is left of the instance and ends."""
    if watchdog is None:
        return
    if watchdog.stdin is not None:
        watchdog.stdin.close()
    try:
        watchdog.wait(timeout)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()


def watch(known: Processes) -> None:
    """Until stdin closes, follow ``known`` and their descendants; then kill those still alive."""
    while True:
        readable, _, _ = select.select([sys.stdin.buffer], [], [], REFRESH_S)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            break  # the driver closed the pipe, or died
        table = process_table() or {}
        known = with_descendants(known, table)
    kill_survivors(known, process_table() or {})


def main(argv: list[str]) -> None:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # a terminal's signals end the driver; the pipe ends the watch
    known = {}
    for arg in argv:
        pid, start = arg.split(":", 1)
        known[int(pid)] = start
    watch(known)


if __name__ == "__main__":
    main(sys.argv[1:])
