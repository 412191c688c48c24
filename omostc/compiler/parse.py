"""Canvas code -> scene spec, reading the program as data with ``ast`` (never ``exec``): the driver.

It finds the program in an LLM answer (``source``), parses it, recovers what can be recovered
(a truncated answer's complete calls with ``partial``, the classic unescaped quote), and hands
the module to the call builder (``calls``). The program may only create a canvas and call its
two description methods with literal arguments; everything else is reported as an error
located in the original file.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field

from omostc.compiler.calls import SceneBuilder
from omostc.compiler.source import ProgramText, extract_program
from omostc.diagnostics import CompileError, Diagnostic, Severity
from omostc.spec.model import Scene

MAX_SOURCE_CHARS = 8 * 1024 * 1024  # about 25,000 regions; ast needs ~80 bytes of memory per source byte
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


class _Compiler:
    def __init__(self, text: str, file: str, partial: bool):
        self.file = file
        self.partial = partial
        self.text = text
        self.diagnostics: list[Diagnostic] = []
        self.truncated = False
        self.program: ProgramText | None = None

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
            lines = p.code.split("\n")
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

    # --- driver ---------------------------------------------------------------------------

    def run(self) -> CompileResult:
        scene = None
        try:
            scene = self._run()
        except _Abort:
            pass
        errors = [d for d in self.diagnostics if d.severity == "error"]
        if errors or scene is None:
            raise CompileError(self.diagnostics, truncated=self.truncated)
        return CompileResult(scene=scene, warnings=list(self.diagnostics), truncated=self.truncated)

    def _run(self) -> Scene | None:
        if len(self.text) > MAX_SOURCE_CHARS:
            self.report("error", f"input is {len(self.text):,} characters; the limit is {MAX_SOURCE_CHARS:,}")
            return None
        if "\x00" in self.text:
            line = self.text.count("\n", 0, self.text.index("\x00")) + 1
            self.program = extract_program(self.text)
            self.diagnostics.append(Diagnostic("error", "input contains a NUL byte: not a text file",
                                               file=self.file, line=line))
            return None
        self.program = extract_program(self.text)
        if self.program.prose_lines and _syntax_error_line(self.program.code, self.program.prose_lines):
            self.program = extract_program(self.text, skip_prose=True)
        code = self.program.code
        if not CANVAS_OR_CALL.search(code):
            self.report("error", "no Canvas program found (expected `canvas = Canvas()` and canvas method calls)")
            return None
        module = self._parse(code)
        if module is None:
            return None
        return SceneBuilder(self).build(module)

    # --- syntax ---------------------------------------------------------------------------

    def _parse(self, code: str) -> ast.Module | None:
        for attempt in range(MAX_QUOTE_REPAIRS + 1):
            self.lines = code.split("\n")
            try:
                return ast.parse(code, filename=self.file)
            except SyntaxError as exc:
                repaired = _repair_unescaped_quote(code, exc) if attempt < MAX_QUOTE_REPAIRS else None
                if repaired is not None:
                    code, line, col = repaired
                    self.lines = code.split("\n")
                    self.report("warning", "repaired an unescaped quote inside a string literal "
                                "(a common LLM slip); check the text", line, col)
                    continue
                return self._syntax_failure(code, exc)
            except (RecursionError, MemoryError):
                self.report("error", "program is nested too deeply to read")
                return None
            except ValueError as exc:  # e.g. invalid characters the tokenizer rejects outright
                self.report("error", f"cannot read the program: {exc}")
                return None
        return None  # unreachable: the last attempt reports its syntax error

    def _syntax_failure(self, code: str, exc: SyntaxError) -> ast.Module | None:
        line = exc.lineno or 1
        col = exc.offset or 1
        if _looks_truncated(code, exc, self.program):
            self.truncated = True
            if self.partial:
                kept = _complete_prefix(code, line)
                if kept is not None:
                    module, n_lines = kept
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
        if "f-string" in message:
            message += " (f-strings are not allowed anyway: Canvas code is read as data)"
        self.report("error", f"invalid Python syntax: {message}", line, col,
                    (exc.end_offset if exc.end_lineno == line and exc.end_offset and exc.end_offset > col else None))
        return None


CANVAS_OR_CALL = re.compile(r"Canvas|set_global_description|add_local_description")


def _syntax_error_line(code: str, within: int) -> bool:
    """Does ``code`` fail to parse within its first ``within`` lines?"""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return (exc.lineno or 0) <= within
    except (RecursionError, MemoryError, ValueError):
        return False
    return False


def _char_col(lines: list[str], line: int | None, byte_col: int) -> int:
    """ast columns count UTF-8 bytes; diagnostics count characters (1-based)."""
    if line is None or not (1 <= line <= len(lines)):
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


def _complete_prefix(code: str, error_line: int) -> tuple[ast.Module, int] | None:
    """The longest run of complete top-level statements before the broken one."""
    ends: list[int] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.start[0] >= error_line:
                break
            if tok.type == tokenize.NEWLINE:
                ends.append(tok.end[0])
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    lines = code.split("\n")
    for end in reversed(ends):
        try:
            return ast.parse("\n".join(lines[:end]) + "\n"), end
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            continue
    return (ast.parse(""), 0) if not ends else None


_QUOTED_LINE = re.compile(
    r"^(?P<head>\s*(?:[A-Za-z_]\w*\s*=\s*)?)(?P<q>['\"])(?P<body>.*)(?P=q)(?P<tail>\s*[,)\]]*\s*)$"
)


def _repair_unescaped_quote(code: str, exc: SyntaxError) -> tuple[str, int, int] | None:
    """Fix ``'Surrounding the 'O' are ...',`` (Omost issue 88) when the repair is unambiguous.

    Only a line that holds one string literal (optionally ``key=`` before it and ``,`` or
    closing brackets after it), whose body contains the same quote unescaped, is repaired:
    re-quoted with the other quote when the body has none of those, else escaped.
    Returns the new code and the 1-based (line, column) of the repaired literal.
    """
    if exc.lineno is None:
        return None
    lines = code.split("\n")
    idx = exc.lineno - 1
    if not (0 <= idx < len(lines)):
        return None
    m = _QUOTED_LINE.match(lines[idx])
    if not m:
        return None
    q, body = m.group("q"), m.group("body")
    if q not in body.replace("\\" + q, "") or '"""' in body or "'''" in body:
        return None
    other = "'" if q == '"' else '"'
    if other not in body:
        literal = other + body.replace("\\" + q, q) + other
    else:
        literal = q + re.sub(r"(?<!\\)" + re.escape(q), "\\" + q, body) + q
    try:
        value = ast.literal_eval(literal)
    except (SyntaxError, ValueError):
        return None
    if not isinstance(value, str):
        return None
    lines[idx] = m.group("head") + literal + m.group("tail")
    return "\n".join(lines), exc.lineno, len(m.group("head")) + 1


# --- semantics --------------------------------------------------------------------------------


