"""Located diagnostics: every error and warning points at file, line and column.

A diagnostic renders as::

    response.md:12:17: error: f-strings are not allowed: Canvas code is read as data
       12 |     description=f"a {thing}",
          |                 ^^^^^^^^^^^^
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` safe for a terminal: every control character except newline and tab (escape
    sequences, carriage returns, C1 controls) and every lone surrogate is shown escaped (``\\x1b``),
    so nothing that came from an input file, a model or a server can act on the terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)
MAX_MESSAGE = 400


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    message: str
    file: str | None = "<input>"
    line: int | None = None  # 1-based, in the original file
    col: int | None = None  # 1-based
    end_col: int | None = None  # 1-based, exclusive; None marks a single caret
    source_line: str | None = None  # the offending line as it stands in the file

    def __post_init__(self):
        if len(self.message) > MAX_MESSAGE:  # a 1 MB identifier must not make a 1 MB message
            object.__setattr__(self, "message", self.message[:MAX_MESSAGE] + " ...")

    def location(self) -> str:
        parts = [self.file] if self.file else []
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def format(self) -> str:
        """The diagnostic as the terminal shows it: everything that came from the input escaped
        (``printable``), a long line cut to a window around the column, the caret under the text."""
        where = printable(self.location())
        message = printable(self.message)
        head = f"{where}: {self.severity}: {message}" if where else f"{self.severity}: {message}"
        if self.source_line is None or self.line is None:
            return head
        text = self.source_line.rstrip("\r\n")
        gutter = f"{self.line:>5} | "
        start = min(max((self.col or 1) - 1, 0), len(text))
        end = min(max((self.end_col or 0) - 1, start + 1), len(text))
        shown, caret_at, caret_width = _excerpt(text, start, end)
        out = [head, gutter + shown]
        if self.col is not None:
            out.append(" " * (len(gutter) - 2) + "| " + " " * caret_at + "^" * caret_width)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


SHOWN_LINE = 240  # a source line longer than this is shown as a window around the column
BEFORE, AFTER = 60, 100  # the window: characters before the column, and from it on
_INVISIBLE = re.compile(r"[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u206f\ufeff\ufff9-\ufffb]")


def _excerpt(text: str, start: int, end: int) -> tuple[str, int, int]:
    """The part of a source line to show, and the terminal column and width of the caret under
    ``text[start:end]`` in it: control characters escaped, and invisible characters (bidi
    controls, zero-width spaces) too, so the excerpt shows what the line holds in its order."""
    lo, hi = 0, len(text)
    if len(text) > SHOWN_LINE:
        lo = 0 if start <= SHOWN_LINE - AFTER else start - BEFORE
        hi = min(len(text), SHOWN_LINE if lo == 0 else start + AFTER)
    end = max(min(end, hi), start)
    before = ("... " if lo > 0 else "") + _shown(text[lo:start])
    marked = _shown(text[start:end])
    after = _shown(text[end:hi]) + (" ..." if hi < len(text) else "")
    return before + marked + after, _width(before), max(_width(marked), 1)


def _shown(text: str) -> str:
    text = printable(text.replace("\t", " ").replace("\n", " "))
    return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _width(text: str) -> int:
    """Terminal columns: East Asian wide characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


class OmostcError(Exception):
    """Base of every user-facing error omostc raises. It carries located diagnostics, so every
    front end (the CLI, a JSON log, a web page) can show where the problem is; the CLI prints
    them without a traceback. ``OmostcError("message", file=...)`` makes a one-diagnostic error."""

    def __init__(self, problem: str | list[Diagnostic] = "", *, file: str | None = None):
        if isinstance(problem, str):
            self.diagnostics = [Diagnostic("error", problem, file=file)] if problem else []
            super().__init__(problem)
        else:
            self.diagnostics = list(problem)
            super().__init__("\n".join(d.format() for d in self.errors) or type(self).__name__)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    def summary(self) -> str:
        """The first error in one line, located by line and column (the file is named elsewhere)."""
        first = self.errors[0] if self.errors else None
        if first is None:
            return str(self).splitlines()[0] if str(self) else type(self).__name__
        where = f"line {first.line}" + (f", column {first.col}" if first.col else "") + ": " if first.line else ""
        return where + first.message


class InputError(OmostcError):
    """An input file that cannot be read (missing, not UTF-8, too large)."""


class CompileError(OmostcError):
    """Canvas code that cannot be compiled; carries every located diagnostic."""

    answer: str | None = None  # set by the LLM front: the model's answer that did not compile
    interrupted: bool = False  # set by the LLM front: the answer was cut short by Ctrl-C

    def __init__(self, diagnostics: list[Diagnostic], *, truncated: bool = False):
        super().__init__(list(diagnostics))
        self.truncated = truncated
        if not self.errors:
            self.args = ("compilation failed",)


class SpecError(OmostcError):
    """A YAML scene spec or render profile that does not load or does not validate."""


class SettingsError(SpecError):
    """Render settings out of range, or an option the chosen backend does not have; raised before
    any model loads, whichever source the setting came from (flag, spec, profile, PNG)."""


class ProvenanceError(OmostcError):
    """A PNG without omostc's provenance chunks, or with damaged ones."""


class ModelError(OmostcError):
    """A model that cannot be loaded, or a device that cannot be used."""


class RenderError(OmostcError):
    """A render that cannot run with the IR and settings it was given."""


class LLMError(OmostcError):
    """A language model or server that cannot answer."""

    answer: str | None = None  # set by the LLM front: the text streamed before the error, for --partial use
