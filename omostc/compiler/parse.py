"""Canvas code -> scene spec, reading the program as data with ``ast`` (never ``exec``): the driver.

It finds the program in an LLM answer (``source``), parses it, recovers what can be recovered
(a truncated answer's complete calls with ``partial``, the classic unescaped quote: ``repair``),
and hands the module to the call builder (``calls``). The program may only create a canvas and
call its two description methods with literal arguments; everything else is reported as an
error located in the original file.

The cost is bounded whatever the input (``bounds``). At most 8 MiB and 1,000,000 lines are
read; finding the program costs at most ~20 bytes of memory per input byte (short lines cost
most). ``ast.parse`` costs about 900 bytes per token, so a program of more than 500,000 tokens is
refused before it is parsed, after a count that costs no memory per byte: parsing then takes at
most ~450 MB and ~2 s, and is done a few times at most (once, again without a prose preamble,
and up to three times to repair unescaped quotes, all at once). At most 5,000 regions, 1,000
items a list and 100 diagnostics are read or reported. Measured on 8 MiB inputs of every shape:
under 500 MB and 5 s for the whole ``omostc compile``.
"""

from __future__ import annotations

import ast
import re
import sys
import warnings
from dataclasses import dataclass, field

from omostc.compiler.bounds import (
    MAX_TOKENS,
    deepest_line,
    escaped,
    long_decimal,
    shown_number,
    statement_ends,
    too_many_tokens,
)
from omostc.compiler.calls import SceneBuilder
from omostc.compiler.repair import applied, inside_long_strings, plan_repairs
from omostc.compiler.source import ProgramText, extract_program
from omostc.diagnostics import CompileError, Diagnostic, Severity
from omostc.files import wide_encoding
from omostc.spec.model import Scene

MAX_SOURCE_CHARS = 8 * 1024 * 1024
MAX_LINES = 1_000_000  # each line costs ~100 bytes to map diagnostics back to the file
MAX_DIAGNOSTICS = 100
MAX_QUOTE_REPAIRS = 50


@dataclass
class CompileResult:
    scene: Scene
    warnings: list[Diagnostic] = field(default_factory=list)
    truncated: bool = False


def compile_canvas(text: str, *, file: str = "<input>", partial: bool = False) -> CompileResult:
    """Compile an LLM response (markdown or bare code) holding a Canvas program into a Scene.

    Raises CompileError, carrying every located diagnostic, when the program is not a valid
    canvas. With ``partial=True`` a truncated program keeps its complete calls.
    """
    return _Compiler(text, file, partial).run()


class _Abort(Exception):
    """Stops a compilation whose diagnostics are already recorded."""


_NOT_TEXT = re.compile(r"[\x00\ud800-\udfff]")


class _Compiler:
    def __init__(self, text: str, file: str, partial: bool):
        self.file = file
        self.partial = partial
        self.text = text
        self.unicode_escapes = True  # set once the program is found (see _run)
        self.diagnostics: list[Diagnostic] = []
        self.truncated = False
        self.program: ProgramText | None = None
        self.lines: list[str] = []  # the program's lines as last parsed

    # --- reporting ------------------------------------------------------------------------

    def report(self, severity: Severity, message: str, line: int | None = None, col: int | None = None,
               end_col: int | None = None) -> None:
        """Record a diagnostic at a 1-based (line, character column) of the program."""
        if len(self.diagnostics) >= MAX_DIAGNOSTICS:
            if len(self.diagnostics) == MAX_DIAGNOSTICS:
                self.diagnostics.append(Diagnostic("error", "too many problems; stopping here", file=self.file))
            raise _Abort
        p = self.program
        if p is None:
            self.diagnostics.append(Diagnostic(severity, message, file=self.file))
            return
        if line is None:  # about the whole program: point at its first line
            lines = self.lines or p.code.split("\n")
            line = next((i + 1 for i, text in enumerate(lines) if text.strip()), 1)
            col, end_col = 1, None
        src = p.original_line_text(line)
        oline, ocol = p.original(line, col or 1)
        oend = ocol + (end_col - col) if (end_col is not None and col is not None) else None
        self.diagnostics.append(Diagnostic(severity, message, file=self.file, line=oline,
                                           col=ocol if col is not None else None, end_col=oend,
                                           source_line=src))

    def at(self, node: ast.AST, severity: Severity, message: str) -> None:
        line = getattr(node, "lineno", None)
        col = _char_col(self.lines, line, getattr(node, "col_offset", 0))
        end_col = None
        end_col_offset = getattr(node, "end_col_offset", None)
        if getattr(node, "end_lineno", None) == line and end_col_offset is not None:
            end_col = _char_col(self.lines, line, end_col_offset)
        self.report(severity, message, line, col, end_col)

    def error(self, node: ast.AST, message: str) -> None:
        self.at(node, "error", message)

    def warn(self, node: ast.AST, message: str) -> None:
        self.at(node, "warning", message)

    def fatal(self, node: ast.AST, message: str) -> None:
        """An error after which reading on makes no sense (a limit reached)."""
        self.at(node, "error", message)
        raise _Abort

    def source_of(self, node: ast.AST) -> str:
        """The text of a node as written (its first line, for one that spans several)."""
        line, col = getattr(node, "lineno", 0), getattr(node, "col_offset", 0)
        if not 1 <= line <= len(self.lines):
            return "..."
        if isinstance(node, ast.UnaryOp) and node.end_lineno != line and isinstance(node.operand, ast.Constant):
            return ("-" if isinstance(node.op, ast.USub) else "+") + self.source_of(node.operand)
        text = self.lines[line - 1]
        end = getattr(node, "end_col_offset", None) if getattr(node, "end_lineno", None) == line else None
        if text.isascii():
            return text[col:end] + ("" if end is not None else " ...")
        return text.encode("utf-8")[col:end].decode("utf-8", "replace") + ("" if end is not None else " ...")

    # --- driver ---------------------------------------------------------------------------

    def run(self) -> CompileResult:
        scene = None
        try:
            scene = self._run()
        except _Abort:
            pass
        except (RecursionError, MemoryError):  # a last resort: any input gets an answer
            self.diagnostics.append(Diagnostic("error", "the program is too complex to read", file=self.file))
        errors = [d for d in self.diagnostics if d.severity == "error"]
        if errors or scene is None:
            raise CompileError(self.diagnostics, truncated=self.truncated)
        return CompileResult(scene=scene, warnings=list(self.diagnostics), truncated=self.truncated)

    def _run(self) -> Scene | None:
        if len(self.text) > MAX_SOURCE_CHARS:
            self.report("error", f"the input is {len(self.text):,} characters, more than the limit of "
                        f"{MAX_SOURCE_CHARS:,} (8 MiB)")
            return None
        if self.text.count("\n") + self.text.count("\r") > MAX_LINES:
            self.report("error", f"the input has more than {MAX_LINES:,} lines, the limit for a program")
            return None
        self.program = extract_program(self.text)
        # only \u and \U escapes make lone surrogates (raw ones are refused below): strings need no check otherwise
        self.unicode_escapes = "\\u" in self.text or "\\U" in self.text
        if _NOT_TEXT.search(self.text):
            self._not_text()
            return None
        code = self.program.code
        if not CANVAS_OR_CALL.search(code):
            self.report("error", "no Canvas program found (expected `canvas = Canvas()` and canvas method calls)")
            return None
        if too_many_tokens(code):
            self.report("error", f"too many tokens: the program has more than {MAX_TOKENS:,} names, numbers, "
                        "strings and punctuation marks (a region as the models write it has about 100); "
                        "the limit bounds the memory that reading it takes")
            return None
        module = self._parse()
        if module is None:
            return None
        return SceneBuilder(self).build(module)

    def _not_text(self) -> None:
        """A NUL character or a lone surrogate in the text itself (not written as an escape)."""
        assert self.program is not None
        for i, line in enumerate(self.program.original_lines):
            m = _NOT_TEXT.search(line)
            if m is None:
                continue
            if m.group() != "\x00":
                message = f"the input is not valid text: it holds a lone surrogate {escaped(m.group())}"
            elif wide_encoding(self.text[:4096].encode("latin-1", "replace")):
                message = "the input holds NUL characters: it looks like UTF-16 or UTF-32 read as 8-bit text"
            else:
                message = "input contains a NUL byte: not a text file"
            self.diagnostics.append(Diagnostic("error", message, file=self.file, line=i + 1,
                                               col=m.start() + 1, source_line=line))
            return

    # --- syntax ---------------------------------------------------------------------------

    def _parse(self) -> ast.Module | None:
        """The module; on a syntax error, retried without a prose preamble, then with the
        unescaped quotes repaired, then reported (or, when truncated, cut back with --partial)."""
        assert self.program is not None
        code = self.program.code
        try:
            return self._ast(code)
        except SyntaxError as exc:
            first = exc
        prose = self.program.prose_lines
        if prose and (first.lineno or 0) <= prose:  # the user's prompt pasted above the code
            self.program = extract_program(self.text, skip_prose=True)
            code = self.program.code
            try:
                return self._ast(code)
            except SyntaxError as exc:
                first = exc
        return self._repaired(code, first)

    def _ast(self, code: str) -> ast.Module:
        """``ast.parse``; what is not a SyntaxError becomes a located error."""
        self.lines = code.split("\n")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                module = ast.parse(code, filename=self.file)
            self._parser_warnings(caught)
            return module
        except (RecursionError, MemoryError):
            line, col = deepest_line(self.lines)
            self.report("error", "the program is nested too deeply to read (an expression thousands of levels "
                        "deep, around here)", line, col)
        except SyntaxError:
            raise
        except ValueError as exc:  # e.g. characters the tokenizer rejects outright
            self.report("error", f"cannot read the program: {exc}")
        raise _Abort

    def _parser_warnings(self, caught: list[warnings.WarningMessage]) -> None:
        """Python's own warnings (an invalid escape such as '\\d' is kept as written) as located
        diagnostics: the first, and how many more, rather than raw lines on stderr."""
        if not caught:
            return
        first = caught[0]
        more = f" ({len(caught) - 1} more like it)" if len(caught) > 1 else ""
        kept = "; the backslash is kept as written" if "escape sequence" in str(first.message) else ""
        self.report("warning", f"{first.message}{kept}{more}", first.lineno or None, None)

    def _repaired(self, code: str, first: SyntaxError) -> ast.Module | None:
        """Repair every unescaped quote from the first error on in one go, then re-parse: a few
        parses whatever the count (lines that were no error after all are put back)."""
        lines = code.split("\n")
        plan = plan_repairs(lines, first.lineno or 0, MAX_QUOTE_REPAIRS)
        for _ in range(3):
            if not plan:
                break
            candidate = applied(lines, plan)
            try:
                module = self._ast(candidate)
            except SyntaxError as exc:
                kept = [r for r in plan if r.line < (exc.lineno or 0)]
                if len(kept) == len(plan):  # a new error after every repair: report it
                    self._report_repairs(plan)
                    return self._syntax_failure(candidate, exc)
                plan = kept
                continue
            inside = inside_long_strings(module, self.lines, plan)
            if not inside:
                self._report_repairs(plan)
                return module
            plan = [r for r in plan if r.line not in inside]
        self.lines = lines
        return self._syntax_failure(code, first)

    def _report_repairs(self, plan) -> None:
        for r in plan:
            self.report("warning", "repaired an unescaped quote inside a string literal "
                        "(a common LLM slip); check the text", r.line, r.col)

    def _syntax_failure(self, code: str, exc: SyntaxError) -> ast.Module | None:
        line = exc.lineno or 1
        col = exc.offset or 1
        if _looks_truncated(code, exc, self.program):
            self.truncated = True
            if self.partial:
                kept = _complete_prefix(code, line)
                if kept is not None:
                    module, n_lines, caught = kept
                    self._parser_warnings(caught)
                    last = max(n_lines, 1)
                    self.report("warning", "the program is truncated (the model probably hit its token "
                                "limit); --partial keeps the calls completed before this point",
                                last + 1 if last < len(self.lines) else last, 1)
                    return module
            last_line = _last_content_line(self.lines)
            self.report("error", "the program is truncated: it ends in the middle of a statement (the "
                        "model probably hit its token limit); --partial keeps the complete calls",
                        last_line, max(len(self.lines[last_line - 1]), 1))
            return None
        message = re.sub(r"\s*\(detected at line \d+\)", "", exc.msg or "invalid syntax")
        if "integer string conversion" in message and 1 <= line <= len(self.lines):
            number = long_decimal(self.lines[line - 1])
            if number is not None:  # Python's own advice (sys.set_int_max_str_digits) is no help here
                limit = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
                self.report("error", f"{shown_number(number.group())}: too long to read (a number may have "
                            f"{limit:,} digits at most)", line, number.start() + 1, number.end() + 1)
                return None
        if "f-string" in message:
            message += " (f-strings are not allowed anyway: Canvas code is read as data)"
        self.report("error", f"invalid Python syntax: {message}", line, col,
                    (exc.end_offset if exc.end_lineno == line and exc.end_offset and exc.end_offset > col else None))
        return None


CANVAS_OR_CALL = re.compile(r"Canvas|set_global_description|add_local_description")


def _char_col(lines: list[str], line: int | None, byte_col: int) -> int:
    """ast columns count UTF-8 bytes; diagnostics count characters (1-based)."""
    if line is None or not (1 <= line <= len(lines)):
        return byte_col + 1
    if lines[line - 1].isascii():
        return byte_col + 1
    return len(lines[line - 1].encode("utf-8")[:byte_col].decode("utf-8", errors="ignore")) + 1


def _last_content_line(lines: list[str]) -> int:
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip():
            return i + 1
    return 1


_TRUNCATION_MESSAGES = ("was never closed", "unexpected EOF", "unterminated triple-quoted string",
                        "EOF while scanning", "expected an indented block")


def _looks_truncated(code: str, exc: SyntaxError, program: ProgramText | None) -> bool:
    lines = code.split("\n")
    last = _last_content_line(lines)
    msg = exc.msg or ""
    if any(m in msg for m in _TRUNCATION_MESSAGES):
        return True
    at_end = (exc.lineno or 0) >= last
    if at_end and "unterminated string literal" in msg:
        return True
    return bool(program and program.unterminated_fence and at_end)


def _complete_prefix(code: str, error_line: int) -> tuple[ast.Module, int, list] | None:
    """The longest run of complete top-level statements before the broken one (and the warnings
    parsing it gave)."""
    lines = code.split("\n")
    before = sum(len(text) + 1 for text in lines[:error_line - 1])
    ends = statement_ends(code, before)
    for end in reversed(ends[-3:]):  # each try parses the prefix: a few, not one per statement
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                module = ast.parse("\n".join(lines[:end]) + "\n")
            return module, end, caught
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            continue
    return (ast.parse(""), 0, []) if not ends else None


# --- semantics --------------------------------------------------------------------------------


