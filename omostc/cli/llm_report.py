"""What ``omostc generate``, ``edit`` and ``chat`` show while a model answers (the streamed text,
a waiting line, one block per attempt), and how they keep an answer safe: the output is checked
before the model is asked, and an answer that cannot be written, or that was cut short, is kept
in a recovery file whose name the message gives."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from typing import TextIO

import click

from omostc.diagnostics import CompileError, printable

WAIT_LINES = (2, 10, 30, 60)  # seconds at which a plain (not a terminal) waiting line is printed; then every 60


class Waiting:
    """``waiting for ...: N s`` on ``out`` until ``stop()``: rewritten in place each ``tick`` on a
    terminal (and cleared at the end), else as plain lines at 2, 10, 30 and 60 s, then every 60 s."""

    def __init__(self, out: TextIO, what: str, tick: float = 1.0):
        self.out, self.what, self.tick = out, what, tick
        self.terminal = bool(getattr(out, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="omostc-waiting", daemon=True)
        self._shown = False

    def start(self) -> Waiting:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        plain = list(WAIT_LINES)
        while not self._stop.wait(self.tick if self.terminal else max(0.0, self._next(plain))):
            elapsed = time.monotonic() - self._started
            if self.terminal:
                self._write(f"\rwaiting for {self.what}: {elapsed:.0f} s (Ctrl-C stops)")
            elif elapsed >= plain[0]:
                self._write(f"waiting for {self.what}: {plain[0]} s\n")
                plain = plain[1:] or [plain[0] + 60]

    def _next(self, plain: list[int]) -> float:
        return plain[0] - (time.monotonic() - self._started)

    def _write(self, text: str) -> None:
        self._shown = True
        self.out.write(text)
        self.out.flush()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        if self.terminal and self._shown:
            self._shown = False
            self._write("\r\x1b[K")


class Report:
    """The callbacks of one request: the streamed text (escaped for the terminal), a waiting line
    before its first text, and each failed attempt's error (one line each with ``quiet``)."""

    def __init__(self, quiet: bool, *, err: bool = True, what: str = "the first token"):
        self.quiet, self.err, self.what = quiet, err, what
        self.at_line_start = True
        self._waiting: Waiting | None = None

    def attempt(self, number: int, attempts: int) -> None:
        if number > 1 and not self.quiet:
            self.end_line()
            click.echo(f"--- attempt {number} of {attempts} ---", err=self.err)
        self.stop()
        if not self.quiet:
            self._waiting = Waiting(sys.stderr, self.what).start()

    def text(self, text: str) -> None:
        self.stop()
        if not self.quiet and text:
            click.echo(printable(text), err=self.err, nl=False)
            self.at_line_start = text.endswith("\n")

    def failure(self, number: int, attempts: int, exc: CompileError) -> None:
        self.stop()
        self.end_line()
        errors = [d for d in exc.diagnostics if d.severity == "error"] or exc.diagnostics
        if self.quiet:
            first = errors[0].format().splitlines()[0] if errors else str(exc)
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            click.echo(printable(f"attempt {number} of {attempts} did not compile: {first}{more}"), err=True)
            return
        for d in errors:
            click.echo(printable(d.format()), err=True)
        click.echo(f"attempt {number} of {attempts} did not compile; asking again with a new seed", err=True)

    def end_line(self) -> None:
        """End the streamed text's line, so what follows starts on its own."""
        self.stop()
        if not self.at_line_start:
            click.echo("", err=self.err)
            self.at_line_start = True

    def stop(self) -> None:
        if self._waiting is not None:
            self._waiting.stop()
            self._waiting = None


def output_problem(path: str) -> str | None:
    """Why a spec cannot be written to ``path``, found before the model is asked; None if it can
    (a missing folder can be created: it will be, as ``omostc compile -o`` does)."""
    name = printable(path)
    if "\x00" in path:
        return f"{name}: error: cannot write: a file name cannot contain a NUL character"
    if not os.path.basename(path) or os.path.isdir(path):
        return f"{name}: error: cannot write: it is a folder; give a file name"
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{name}: error: cannot write: {printable(existing)} is not a folder"
    if existing != folder:  # folders to create: the nearest existing one must take them
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"{name}: error: cannot write: cannot create a folder in {printable(existing)}"
        return None
    probe = path if not os.path.lexists(path) else os.path.join(folder, f".omostc-probe.{os.getpid()}.tmp")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.unlink(probe)
    except OSError as exc:
        return f"{name}: error: cannot write: {printable(exc.strerror or str(exc))}"
    return None


def missing_folder(path: str) -> str | None:
    """The folder of ``path`` if it does not exist yet (writing the spec creates it)."""
    folder = os.path.dirname(path)
    return folder if folder and not os.path.isdir(folder) else None


def keep_answer(text: str) -> str | None:
    """Save an answer in a new recovery file, ``omostc-answer-<time>.md`` in the current folder
    (else the temporary folder); its path, or None when no file could be written."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for folder in (os.curdir, tempfile.gettempdir()):
        for n in range(100):
            name = f"omostc-answer-{stamp}{f'-{n}' if n else ''}.md"
            path = name if folder == os.curdir else os.path.join(folder, name)
            try:
                with open(path, "x", encoding="utf-8", newline="") as fh:
                    fh.write(text)
                return path
            except FileExistsError:
                continue
            except OSError:
                break
    return None


def kept(text: str | None, partial: bool) -> str:
    """A line that says where an answer was saved (and how to compile it), or why not."""
    if not text:
        return ""
    path = keep_answer(text)
    if path is None:
        return "the answer could not be saved anywhere"
    how = f"omostc compile --partial {path}" if partial else f"omostc compile {path}"
    return printable(f"the answer {'so far ' if partial else ''}is kept in {path} (`{how}` turns it into a spec)")
