"""Canvas code -> scene spec, reading the program as data with ``ast`` (never ``exec``).

The program may only create a canvas and call its two description methods with literal
arguments; everything else is reported as an error located in the original file. Values are
checked and snapped the way Omost does (lower-case, ``difflib`` with cutoff 0.5), and every
correction is reported as a warning at the value it changed.
"""

from __future__ import annotations

import ast
import difflib
import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from omostc.compiler.source import ProgramText, extract_program
from omostc.diagnostics import CompileError, Diagnostic
from omostc.spec.model import Box, GlobalDescription, Region, Scene
from omostc.spec.tables import AREAS, COLORS, GLOBAL_PARAMS, GRID, LOCATIONS, OFFSETS, REGION_PARAMS

MAX_SOURCE_CHARS = 8 * 1024 * 1024  # about 25,000 regions; ast needs ~80 bytes of memory per source byte
MAX_DIAGNOSTICS = 100
MAX_QUOTE_REPAIRS = 50
MAX_ENUM_CHARS = 200

GLOBAL_METHOD = "set_global_description"
REGION_METHOD = "add_local_description"
IGNORED_METHODS = ("process",)
REGION_EXTRAS = ("name", "bbox", "feather", "weight")  # beyond Omost's API


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

    def report(self, severity: str, message: str, line: int | None = None, col: int | None = None,
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

    def at(self, node: ast.AST, severity: str, message: str) -> None:
        line = getattr(node, "lineno", None)
        col = _char_col(self.lines, line, getattr(node, "col_offset", 0))
        end_col = None
        if getattr(node, "end_lineno", None) == line:
            end_col = _char_col(self.lines, line, node.end_col_offset)
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
        return _SceneBuilder(self).build(module)

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

_NODE_KIND = {
    ast.JoinedStr: "an f-string",
    ast.Name: "a variable name",
    ast.Call: "a function call",
    ast.BinOp: "an arithmetic or concatenation expression",
    ast.BoolOp: "a boolean expression",
    ast.Compare: "a comparison",
    ast.ListComp: "a list comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.SetComp: "a set comprehension",
    ast.DictComp: "a dict comprehension",
    ast.Lambda: "a lambda",
    ast.Attribute: "an attribute access",
    ast.Subscript: "a subscript",
    ast.IfExp: "a conditional expression",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.Starred: "a starred expression",
    ast.NamedExpr: "an assignment expression",
    ast.Await: "an await expression",
}


def _kind(node: ast.AST) -> str:
    if isinstance(node, ast.Constant):
        return f"a {type(node.value).__name__} literal"
    return _NODE_KIND.get(type(node), f"a {type(node).__name__} expression")


class _Invalid(Exception):
    """A value was rejected; its diagnostic is already recorded."""


class _SceneBuilder:
    """Walks the module's statements and turns the canvas calls into a Scene."""

    def __init__(self, compiler: _Compiler):
        self.c = compiler
        self.canvas_var: str | None = None
        self.canvas_node: ast.AST | None = None
        self.global_call: ast.Call | None = None
        self.global_description: GlobalDescription | None = None
        self.regions: list[Region] = []
        self.region_before_global: ast.AST | None = None

    def build(self, module: ast.Module) -> Scene | None:
        for stmt in module.body:
            self.statement(stmt)
        if self.canvas_var is None:
            self.c.report("error", "no `canvas = Canvas()` found: the program must create the canvas")
            return None
        if self.global_call is None:
            self.c.at(self.canvas_node, "error", f"missing `{self.canvas_var}.{GLOBAL_METHOD}(...)`: "
                      "a canvas needs its global description")
            return None
        if self.region_before_global is not None:
            self.c.warn(self.region_before_global, "region added before the global description; omostc "
                        "roots every region's prompts at the global description (Omost would not)")
        if self.global_description is None:
            return None
        return Scene(global_description=self.global_description, regions=self.regions)

    # --- statements -----------------------------------------------------------------------

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.ImportFrom) and (stmt.module or "").split(".")[0] == "lib_omost":
            for alias in stmt.names:
                if alias.name != "Canvas" or alias.asname not in (None, "Canvas"):
                    self.c.warn(stmt, f"ignored import of {alias.name!r} from {stmt.module}")
            return
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            self.c.error(stmt, "imports are not allowed: Canvas code is read as data "
                         "(only `from lib_omost.canvas import Canvas` is tolerated)")
            return
        if isinstance(stmt, ast.Assign):
            self.assignment(stmt)
            return
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            self.method_call(stmt.value)
            return
        self.c.error(stmt, f"{_statement_kind(stmt)} is not allowed: a Canvas program only creates the "
                     "canvas and calls its description methods")

    def assignment(self, stmt: ast.Assign) -> None:
        value = stmt.value
        if (len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                and isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id == "Canvas"):
            if value.args or value.keywords:
                self.c.error(value, "Canvas() takes no arguments")
                return
            if self.canvas_var is not None:
                dropped = len(self.regions) + (self.global_call is not None)
                self.c.warn(stmt, f"a new canvas replaces the one created at line {self._line(self.canvas_node)}"
                            f" (as in Omost, its {dropped} call{'s' if dropped != 1 else ''} are dropped)")
                self.global_call = self.global_description = self.region_before_global = None
                self.regions = []
            self.canvas_var, self.canvas_node = stmt.targets[0].id, stmt
            return
        if isinstance(value, ast.Call) and self._is_method(value, IGNORED_METHODS):
            return  # `outputs = canvas.process()`: rendering is omostc's job; nothing to record
        self.c.error(stmt, "assignment is not allowed: a Canvas program only creates the canvas "
                     "(`canvas = Canvas()`) and calls its description methods")

    def _line(self, node) -> int:
        return self.c.program.original(node.lineno, 1)[0] if node is not None else 0

    def _is_method(self, call: ast.Call, names) -> bool:
        f = call.func
        return (isinstance(f, ast.Attribute) and f.attr in names and isinstance(f.value, ast.Name)
                and f.value.id == self.canvas_var)

    def method_call(self, call: ast.Call) -> None:
        f = call.func
        if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)):
            self.c.error(call, f"calling {_describe_callee(f)} is not allowed: only the canvas's "
                         "description methods may be called")
            return
        known = f.attr in (GLOBAL_METHOD, REGION_METHOD, *IGNORED_METHODS)
        if self.canvas_var is None and known:
            self.c.error(f, f"{f.value.id}.{f.attr}(...) is called before `canvas = Canvas()`")
            return
        if f.value.id != self.canvas_var:
            self.c.error(call, f"calling {_describe_callee(f)} is not allowed: only the canvas's "
                         "description methods may be called")
            return
        if not known:
            self.c.error(f, f"unknown canvas method {f.attr!r}{_did_you_mean(f.attr, (GLOBAL_METHOD, REGION_METHOD))}")
            return
        if f.attr in IGNORED_METHODS:
            if call.args or call.keywords:
                self.c.error(call, f"{f.attr}() takes no arguments")
            return
        try:
            if f.attr == GLOBAL_METHOD:
                self.global_call_(call)
            else:
                self.region_call(call)
        except _Invalid:
            pass

    # --- calls ----------------------------------------------------------------------------

    def bind(self, call: ast.Call, params: tuple[str, ...], extras: tuple[str, ...]) -> dict[str, ast.expr]:
        """Arguments by parameter name, positional ones in the API's order."""
        bound: dict[str, ast.expr] = {}
        ok = True
        for i, arg in enumerate(call.args):
            if isinstance(arg, ast.Starred):
                self.c.error(arg, "*arguments are not allowed: write each argument out")
                ok = False
            elif i >= len(params):
                self.c.error(arg, f"{call.func.attr}() takes {len(params)} arguments; this is number {i + 1}")
                ok = False
            else:
                bound[params[i]] = arg
        for kw in call.keywords:
            if kw.arg is None:
                self.c.error(kw, "**arguments are not allowed: write each argument out")
                ok = False
            elif kw.arg not in params and kw.arg not in extras:
                self.c.error(kw, f"unknown argument {kw.arg!r} for {call.func.attr}()"
                             f"{_did_you_mean(kw.arg, params + extras)}")
                ok = False
            elif kw.arg in bound:
                self.c.error(kw, f"argument {kw.arg!r} is given twice (also by position)")
                ok = False
            else:
                bound[kw.arg] = kw.value
        if not ok:
            raise _Invalid
        return bound

    def require(self, call: ast.Call, bound: Mapping[str, ast.expr], names) -> None:
        missing = [n for n in names if n not in bound]
        if missing:
            self.c.error(call.func, f"{call.func.attr}() is missing required argument"
                         f"{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
            raise _Invalid

    def global_call_(self, call: ast.Call) -> None:
        if self.global_call is not None:
            self.c.error(call.func, "the global description is set twice (first at line "
                         f"{self._line(self.global_call)}); a canvas has one")
            raise _Invalid
        self.global_call = call
        a = self.bind(call, GLOBAL_PARAMS, ())
        self.require(call, a, GLOBAL_PARAMS)
        values = self.convert(a, {
            "description": self.string, "detailed_descriptions": self.strings, "tags": self.string,
            "HTML_web_color_name": lambda n: self.snap(n, COLORS, "colour"),
        })
        self.global_description = GlobalDescription(
            description=values["description"], detailed_descriptions=values["detailed_descriptions"],
            tags=values["tags"], color=values["HTML_web_color_name"],
        )

    def region_call(self, call: ast.Call) -> None:
        if self.global_call is None and self.region_before_global is None:
            self.region_before_global = call
        a = self.bind(call, REGION_PARAMS, REGION_EXTRAS)
        placement = ("location", "offset", "area")
        given = [p for p in placement if p in a]
        if "bbox" in a and given:
            self.c.error(a["bbox"], f"give either bbox or location/offset/area, not both (also has: {', '.join(given)})")
            raise _Invalid
        needed = [p for p in REGION_PARAMS if p not in placement] + ([] if "bbox" in a else list(placement))
        self.require(call, a, needed)
        converters: dict[str, Callable[[ast.expr], Any]] = {
            "distance_to_viewer": self.depth, "description": self.string,
            "detailed_descriptions": self.strings, "tags": self.string, "atmosphere": self.string,
            "style": self.string, "quality_meta": self.string,
            "HTML_web_color_name": lambda n: self.snap(n, COLORS, "colour"),
            "name": self.name, "bbox": self.bbox, "feather": self.feather, "weight": self.weight,
            "location": lambda n: self.snap(n, LOCATIONS, "location"),
            "offset": lambda n: self.snap(n, OFFSETS, "offset"),
            "area": lambda n: self.snap(n, AREAS, "area"),
        }
        v = self.convert(a, converters)
        self.regions.append(Region(
            name=v.get("name"), location=v.get("location"), offset=v.get("offset"), area=v.get("area"),
            box=v.get("bbox"), distance_to_viewer=v["distance_to_viewer"], description=v["description"],
            detailed_descriptions=v["detailed_descriptions"], tags=v["tags"], atmosphere=v["atmosphere"],
            style=v["style"], quality_meta=v["quality_meta"], color=v["HTML_web_color_name"],
            feather=v.get("feather"), weight=v.get("weight"),
        ))

    def convert(self, bound: Mapping[str, ast.expr], converters: Mapping[str, Callable]) -> dict[str, Any]:
        out, failed = {}, False
        for key, node in bound.items():
            try:
                out[key] = converters[key](node)
            except _Invalid:
                failed = True
        if failed:
            raise _Invalid
        return out

    # --- values ---------------------------------------------------------------------------

    def reject(self, node: ast.AST, expected: str) -> None:
        self.c.error(node, f"expected {expected}, found {_kind(node)}: Canvas code is read as data, "
                     "so values must be written as literals")
        raise _Invalid

    def string(self, node: ast.expr) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        self.reject(node, "a string literal")

    def name(self, node: ast.expr) -> str:
        value = self.string(node)
        if not value.strip():
            self.c.error(node, "a region name must not be empty")
            raise _Invalid
        return value

    def strings(self, node: ast.expr) -> list[str]:
        if isinstance(node, ast.Tuple):
            self.c.warn(node, "detailed_descriptions should be a list; read this tuple as one")
        elif not isinstance(node, ast.List):
            self.reject(node, "a list of string literals")
        out, failed = [], False
        for item in node.elts:
            try:
                out.append(self.string(item))
            except _Invalid:
                failed = True
        if failed:
            raise _Invalid
        return out

    def number(self, node: ast.expr) -> int | float:
        sign, inner = 1, node
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            sign, inner = (-1 if isinstance(node.op, ast.USub) else 1), node.operand
        if (isinstance(inner, ast.Constant) and isinstance(inner.value, (int, float))
                and not isinstance(inner.value, bool)):
            return sign * inner.value
        self.reject(node, "a number literal")

    def depth(self, node: ast.expr) -> int | float:
        value = self.number(node)
        if not 0 < value <= 1e300:  # also false for NaN; ints this large never reach float()
            self.c.error(node, f"distance_to_viewer must be a positive finite number, not {value!r}")
            raise _Invalid
        return value

    def feather(self, node: ast.expr) -> int | float:
        value = self.number(node)
        if not 0 <= value <= GRID:
            self.c.error(node, f"feather is a width in grid cells, from 0 to {GRID}; not {value!r}")
            raise _Invalid
        return value

    def weight(self, node: ast.expr) -> int | float:
        value = self.number(node)
        if not 0 < value <= 100:
            self.c.error(node, f"weight must be above 0 and at most 100, not {value!r}")
            raise _Invalid
        return value

    def bbox(self, node: ast.expr) -> Box:
        if not isinstance(node, (ast.List, ast.Tuple)) or len(node.elts) != 4:
            self.reject(node, "bbox=[x, y, w, h]: four integers on the 90 x 90 grid")
        nums = []
        for item in node.elts:
            n = self.number(item)
            if isinstance(n, float):
                if not n.is_integer():
                    self.c.error(item, f"bbox values are whole grid cells; {n!r} is not")
                    raise _Invalid
                n = int(n)
            nums.append(n)
        x, y, w, h = nums
        if not (0 <= x <= GRID and 0 <= y <= GRID and 1 <= w <= GRID and 1 <= h <= GRID):
            self.c.error(node, f"bbox=[x, y, w, h] needs 0 <= x, y <= {GRID} and 1 <= w, h <= {GRID}; got {nums}")
            raise _Invalid
        if x + w > GRID or y + h > GRID:
            self.c.warn(node, f"bbox {nums} reaches past the {GRID} x {GRID} grid; it is clipped there")
        return Box(x=x, y=y, w=w, h=h)

    def snap(self, node: ast.expr, table: Mapping[str, Any], what: str) -> str:
        """Omost's leniency: lower-case, then the closest allowed value (difflib, cutoff 0.5)."""
        value = self.string(node)
        lowered = value.lower()
        if lowered in table:
            if lowered != value:
                self.c.warn(node, f"{what} {value!r} read as {lowered!r}")
            return lowered
        match = (difflib.get_close_matches(lowered, list(table), n=1, cutoff=0.5)
                 if len(value) <= MAX_ENUM_CHARS else [])
        if not match:
            shown = value if len(value) <= 60 else value[:57] + "..."
            options = "" if len(table) > 20 else f"; expected one of: {', '.join(table)}"
            self.c.error(node, f"{shown!r} is not a valid {what}{options}")
            raise _Invalid
        self.c.warn(node, f"automatically corrected {what} {value!r} -> {match[0]!r}")
        return match[0]


def _did_you_mean(word: str, options) -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _describe_callee(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return f"{node.id}()"
    if isinstance(node, ast.Attribute):
        return f"{ast.unparse(node)[:60]}()"
    return "this expression"


def _statement_kind(stmt: ast.stmt) -> str:
    names = {
        ast.FunctionDef: "a function definition", ast.AsyncFunctionDef: "a function definition",
        ast.ClassDef: "a class definition", ast.For: "a for loop", ast.While: "a while loop",
        ast.If: "an if statement", ast.With: "a with statement", ast.Try: "a try statement",
        ast.Delete: "a del statement", ast.Global: "a global statement", ast.Raise: "a raise statement",
        ast.Assert: "an assert statement", ast.Return: "a return statement", ast.Pass: "a pass statement",
        ast.AugAssign: "an augmented assignment", ast.AnnAssign: "an annotated assignment",
    }
    if isinstance(stmt, ast.Expr):
        return f"an expression statement ({_kind(stmt.value)})"
    return names.get(type(stmt), f"a {type(stmt).__name__} statement")
