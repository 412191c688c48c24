"""Find the Canvas program inside an LLM response, keeping a map back to the original lines.

A response may be a markdown answer with a python fence and prose around it, bare code, code
quoted with markdown ``> ``, or code indented inside a block. The result is the program text
plus, for each of its lines, the original line number and the columns removed in front of it,
so every later diagnostic points into the file the user has.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})\s*([\w+-]*)")
_QUOTE = re.compile(r"^[ \t]{0,3}>[ ]?")
_CODE_START = re.compile(
    r"^\s*(?:from\s+\w|import\s+\w|#|[A-Za-z_]\w*\s*=\s*Canvas\s*\(|[A-Za-z_]\w*\.(?:set_global_description|add_local_description)\s*\()"
)
CANVAS_HINT = re.compile(r"\bCanvas\s*\(|\.(?:set_global_description|add_local_description)\s*\(")


@dataclass
class ProgramText:
    """The extracted program and where each of its lines came from."""

    code: str
    original_lines: list[str]  # the whole input, split into lines (newlines removed)
    line_numbers: Sequence[int]  # program line i (0-based) -> original line index (0-based)
    col_offsets: list[int]  # characters removed in front of program line i
    unterminated_fence: bool = False
    prose_lines: int = 0  # leading lines of an unfenced answer that do not look like code

    def original(self, line: int, col: int) -> tuple[int, int]:
        """Map a 1-based (line, character column) in the program to the original file."""
        if not self.line_numbers:
            return 1, col
        i = min(max(line - 1, 0), len(self.line_numbers) - 1)
        return self.line_numbers[i] + 1, col + self.col_offsets[i]

    def original_line_text(self, line: int) -> str | None:
        if not self.line_numbers:
            return None
        i = min(max(line - 1, 0), len(self.line_numbers) - 1)
        return self.original_lines[self.line_numbers[i]]


def split_lines(text: str) -> list[str]:
    """Split on \\n, \\r\\n and \\r alike (CRLF files and old Mac files read the same)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def extract_program(text: str, *, skip_prose: bool = False) -> ProgramText:
    """The program in ``text``: its python fence, else the whole text.

    With ``skip_prose``, an unfenced answer loses the lines before its first code-like line
    (the user's prompt pasted above the code); callers do that only when those lines do not
    parse, so no statement is ever dropped silently.
    """
    lines = split_lines(text)
    indices: Sequence[int] = range(len(lines))  # a range slices to a range: no int per line
    offsets = [0] * len(lines)
    body = list(lines)

    # A whole answer quoted with '> ' (copied out of a markdown blockquote).
    body, offsets = _strip_blockquote(body, offsets)

    unterminated, prose = False, 0
    block = _pick_fenced_block(body)
    if block is not None:
        start, end, unterminated = block
        indices, body, offsets = indices[start:end], body[start:end], offsets[start:end]
        # Lines quoted inside the fence (an editing artifact seen in the wild).
        body, offsets = _strip_blockquote(body, offsets)
    else:
        prose = _first_code_line(body)
        if skip_prose:
            indices, body, offsets = indices[prose:], body[prose:], offsets[prose:]

    body, offsets = _dedent(body, offsets)
    return ProgramText(
        code="\n".join(body) + "\n",
        original_lines=lines,
        line_numbers=indices,
        col_offsets=offsets,
        unterminated_fence=unterminated,
        prose_lines=0 if skip_prose else prose,
    )


def _strip_blockquote(body: list[str], offsets: list[int]) -> tuple[list[str], list[int]]:
    content = [line for line in body if line.strip()]
    if not content or not all(_QUOTE.match(line) for line in content):
        # Tolerate empty '>' lines only when every content line is quoted.
        return body, offsets
    new_body, new_offsets = [], []
    for line, off in zip(body, offsets):
        m = _QUOTE.match(line)
        cut = m.end() if m else 0
        new_body.append(line[cut:])
        new_offsets.append(off + cut)
    return new_body, new_offsets


def _pick_fenced_block(body: list[str]) -> tuple[int, int, bool] | None:
    """(first line, end line, unterminated) of the fenced block holding the program."""
    blocks: list[tuple[int, int, str, bool]] = []
    i, n = 0, len(body)
    while i < n:
        m = _FENCE.match(body[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(1), m.group(2).lower()
        j = i + 1
        while j < n and not _QUOTE.sub("", body[j], count=1).strip().startswith(fence):
            j += 1
        blocks.append((i + 1, j, info, j >= n))
        i = j + 1
    if not blocks:
        return None

    def has_canvas(b):
        return any(CANVAS_HINT.search(line) for line in body[b[0]:b[1]])

    ranked = ([b for b in blocks if b[2] in ("python", "py", "python3") and has_canvas(b)]
              or [b for b in blocks if has_canvas(b)]
              or [b for b in blocks if b[2] in ("python", "py", "python3")])
    if not ranked:
        return None
    start, end, _, unterminated = ranked[0]
    return start, end, unterminated


def _first_code_line(body: list[str]) -> int:
    """Skip prose in front of an unfenced program (e.g. the user's prompt pasted above it)."""
    for i, line in enumerate(body):
        if _CODE_START.match(line):
            return i
    return 0


def _dedent(body: list[str], offsets: list[int]) -> tuple[list[str], list[int]]:
    margins = [len(line) - len(line.lstrip(" \t")) for line in body if line.strip()]
    if not margins:
        return body, offsets
    cut = min(margins)
    if cut == 0:
        return body, offsets
    prefix = next(line[:cut] for line in body if line.strip())
    if not all(line.startswith(prefix) for line in body if line.strip()):
        return body, offsets  # mixed tabs and spaces: leave it to the parser to report
    return ([line[cut:] if line.strip() else "" for line in body],
            [off + cut for off in offsets])
