"""Located diagnostics: every error and warning points at file, line and column.

A diagnostic renders as::

    response.md:12:17: error: f-strings are not allowed: Canvas code is read as data
       12 |     description=f"a {thing}",
          |                 ^^^^^^^^^^^^
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]
MAX_MESSAGE = 400


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    message: str
    file: str = "<input>"
    line: int | None = None  # 1-based, in the original file
    col: int | None = None  # 1-based
    end_col: int | None = None  # 1-based, exclusive; None marks a single caret
    source_line: str | None = None  # the offending line as it stands in the file

    def __post_init__(self):
        if len(self.message) > MAX_MESSAGE:  # a 1 MB identifier must not make a 1 MB message
            object.__setattr__(self, "message", self.message[:MAX_MESSAGE] + " ...")

    def location(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def format(self) -> str:
        head = f"{self.location()}: {self.severity}: {self.message}"
        if self.source_line is None or self.line is None:
            return head
        text = self.source_line.rstrip("\r\n").expandtabs(1)
        gutter = f"{self.line:>5} | "
        out = [head, gutter + _shorten(text)]
        if self.col is not None:
            start = max(self.col - 1, 0)
            width = max((self.end_col or self.col + 1) - self.col, 1)
            width = min(width, max(min(len(text), 240) - start, 1))
            if start <= 200:  # a caret far off to the right helps nobody
                out.append(" " * (len(gutter) - 2) + "| " + " " * start + "^" * width)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


def _shorten(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


class OmostcError(Exception):
    """Base of every user-facing error omostc raises; the CLI prints it without a traceback."""


class CompileError(OmostcError):
    """Canvas code (or a spec) that cannot be compiled; carries every located diagnostic."""

    answer: str | None = None  # set by the LLM front: the model's answer that did not compile

    def __init__(self, diagnostics: list[Diagnostic], *, truncated: bool = False):
        self.diagnostics = list(diagnostics)
        self.truncated = truncated
        super().__init__("\n".join(d.format() for d in self.errors) or "compilation failed")

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


class SpecError(OmostcError):
    """A YAML scene spec that does not load or does not validate; carries located diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))
