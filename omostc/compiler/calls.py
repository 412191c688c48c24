"""The canvas calls of a Canvas program -> a Scene: the statements walked, each call's arguments
bound to Omost's signatures and read as literals (``literals``)."""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from omostc.compiler.literals import InvalidValue, LiteralReader, describe_node, did_you_mean
from omostc.spec.model import GlobalDescription, Region, Scene
from omostc.spec.tables import AREAS, COLORS, GLOBAL_PARAMS, LOCATIONS, OFFSETS, REGION_PARAMS

if TYPE_CHECKING:
    from omostc.compiler.parse import _Compiler


GLOBAL_METHOD = "set_global_description"


REGION_METHOD = "add_local_description"


IGNORED_METHODS = ("process",)


REGION_EXTRAS = ("name", "bbox", "feather", "weight")  # beyond Omost's API


MAX_REGIONS = 5_000  # the models write a handful; each region costs every render a prompt and a mask


class SceneBuilder(LiteralReader):
    """Walks the module's statements and turns the canvas calls into a Scene."""

    def __init__(self, compiler: _Compiler):
        self.c = compiler
        self.canvas_var: str | None = None
        self.canvas_node: ast.stmt | None = None  # set together with canvas_var
        self.global_call: ast.Call | None = None
        self.global_description: GlobalDescription | None = None
        self.regions: list[Region] = []
        self.region_before_global: ast.AST | None = None
        self.region_calls = 0

    def build(self, module: ast.Module) -> Scene | None:
        for stmt in module.body:
            self.statement(stmt)
        if self.canvas_var is None:
            self.c.report("error", "no `canvas = Canvas()` found: the program must create the canvas")
            return None
        if self.global_call is None:
            assert self.canvas_node is not None
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

    def _line(self, node: ast.stmt | ast.expr | None) -> int:
        program = self.c.program  # set before the builder runs
        if node is None or program is None:
            return 0
        return program.original(node.lineno, 1)[0]

    def _callee(self, node: ast.expr) -> str:
        """A called name as written (``os.system()``), from the source: never ``ast.unparse``,
        which recurses once per level of a ``a.b.c...`` chain thousands long."""
        if isinstance(node, ast.Name):
            return f"{node.id[:60]}()"
        if isinstance(node, ast.Attribute):
            text = " ".join(self.c.source_of(node).split())
            return f"{text if len(text) <= 60 else text[:57] + '...'}()"
        return "this expression"

    def _is_method(self, call: ast.Call, names) -> bool:
        f = call.func
        return (isinstance(f, ast.Attribute) and f.attr in names and isinstance(f.value, ast.Name)
                and f.value.id == self.canvas_var)

    def method_call(self, call: ast.Call) -> None:
        f = call.func
        if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)):
            self.c.error(call, f"calling {self._callee(f)} is not allowed: only the canvas's "
                         "description methods may be called")
            return
        known = f.attr in (GLOBAL_METHOD, REGION_METHOD, *IGNORED_METHODS)
        if self.canvas_var is None and known:
            self.c.error(f, f"{f.value.id}.{f.attr}(...) is called before `canvas = Canvas()`")
            return
        if f.value.id != self.canvas_var:
            self.c.error(call, f"calling {self._callee(f)} is not allowed: only the canvas's "
                         "description methods may be called")
            return
        if not known:
            self.c.error(f, f"unknown canvas method {f.attr!r}{did_you_mean(f.attr, (GLOBAL_METHOD, REGION_METHOD))}")
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
        except InvalidValue:
            pass

    # --- calls ----------------------------------------------------------------------------

    def bind(self, call: ast.Call, params: tuple[str, ...], extras: tuple[str, ...]) -> dict[str, ast.expr]:
        """Arguments by parameter name, positional ones in the API's order."""
        bound: dict[str, ast.expr] = {}
        by_keyword: set[str] = set()
        ok = True
        for i, arg in enumerate(call.args):
            if isinstance(arg, ast.Starred):
                self.c.error(arg, "*arguments are not allowed: write each argument out")
                ok = False
            elif i >= len(params):
                self.c.error(arg, f"{_method(call)}() takes {len(params)} arguments; this is number {i + 1}")
                ok = False
            else:
                bound[params[i]] = arg
        for kw in call.keywords:
            if kw.arg is None:
                self.c.error(kw, "**arguments are not allowed: write each argument out")
                ok = False
            elif kw.arg not in params and kw.arg not in extras:
                self.c.error(kw, f"unknown argument {kw.arg!r} for {_method(call)}()"
                             f"{did_you_mean(kw.arg, params + extras)}")
                ok = False
            elif kw.arg in by_keyword:
                self.c.error(kw, f"the keyword {kw.arg!r} is given twice")
                ok = False
            elif kw.arg in bound:
                self.c.error(kw, f"{kw.arg!r} is given twice: as argument {params.index(kw.arg) + 1} and as "
                             f"{kw.arg}=")
                ok = False
            else:
                bound[kw.arg] = kw.value
                by_keyword.add(kw.arg)
        if not ok:
            raise InvalidValue
        return bound

    def require(self, call: ast.Call, bound: Mapping[str, ast.expr], names) -> None:
        missing = [n for n in names if n not in bound]
        if missing:
            self.c.error(call.func, f"{_method(call)}() is missing required argument"
                         f"{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
            raise InvalidValue

    def global_call_(self, call: ast.Call) -> None:
        if self.global_call is not None:
            self.c.error(call.func, "the global description is set twice (first at line "
                         f"{self._line(self.global_call)}); a canvas has one")
            raise InvalidValue
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
        self.region_calls += 1
        if self.region_calls > MAX_REGIONS:
            self.c.fatal(call.func, f"more than {MAX_REGIONS:,} regions; a canvas has a handful")
        if self.global_call is None and self.region_before_global is None:
            self.region_before_global = call
        a = self.bind(call, REGION_PARAMS, REGION_EXTRAS)
        placement = ("location", "offset", "area")
        given = [p for p in placement if p in a]
        if "bbox" in a and given:
            self.c.error(a["bbox"],
                         f"give either bbox or location/offset/area, not both (also has: {', '.join(given)})")
            raise InvalidValue
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
            except InvalidValue:
                failed = True
        if failed:
            raise InvalidValue
        return out

def _method(call: ast.Call) -> str:
    """The name of a canvas method call (``method_call`` dispatches only ``canvas.name(...)``)."""
    assert isinstance(call.func, ast.Attribute)
    return call.func.attr


_STATEMENTS = {
    "FunctionDef": "a function definition", "AsyncFunctionDef": "a function definition",
    "ClassDef": "a class definition", "For": "a for loop", "AsyncFor": "a for loop", "While": "a while loop",
    "If": "an if statement", "With": "a with statement", "AsyncWith": "a with statement",
    "Match": "a match statement", "Try": "a try statement", "TryStar": "a try statement",
    "Delete": "a del statement", "Global": "a global statement", "Nonlocal": "a nonlocal statement",
    "Raise": "a raise statement", "Assert": "an assert statement", "Return": "a return statement",
    "Pass": "a pass statement", "Break": "a break statement", "Continue": "a continue statement",
    "AugAssign": "an augmented assignment", "AnnAssign": "an annotated assignment",
    "TypeAlias": "a type alias",
}


def _statement_kind(stmt: ast.stmt) -> str:
    if isinstance(stmt, ast.Expr):
        return f"an expression statement ({describe_node(stmt.value)})"
    return _STATEMENTS.get(type(stmt).__name__, "this statement")
