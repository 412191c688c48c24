"""Literal values of Canvas calls, read as data: strings, lists of strings, numbers, boxes, and
Omost's enums snapped the way Omost snaps them (lower-case, ``difflib`` with cutoff 0.5), every
correction a warning at the value it changed and every non-literal a located error."""

from __future__ import annotations

import ast
import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from omostc.compiler.bounds import SURROGATE, joined_pairs, lone_surrogate, not_text_message, pair_message, shown_number
from omostc.spec.model import Box
from omostc.spec.tables import GRID

if TYPE_CHECKING:
    from omostc.compiler.parse import _Compiler

MAX_ENUM_CHARS = 200
MAX_LIST_ITEMS = 1_000  # detailed_descriptions; the models write three to eight


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
    ast.List: "a list",
    ast.Tuple: "a tuple",
    ast.Starred: "a starred expression",
    ast.NamedExpr: "an assignment expression",
    ast.Await: "an await expression",
}


def describe_node(node: ast.AST) -> str:
    """What the user wrote, in their words: "a number", "a negative number", "None", "a list"."""
    if isinstance(node, ast.Constant):
        value = node.value
        if value is None or isinstance(value, bool):
            return str(value)
        if value is Ellipsis:
            return "... (an ellipsis)"
        if isinstance(value, complex):
            return "an imaginary number"
        if isinstance(value, (int, float)):
            return "a number"
        if isinstance(value, bytes):
            return "a bytes string (b'...')"
        return "a string"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and \
            isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, (int, float, complex)) and \
            not isinstance(node.operand.value, bool):
        return "a negative number" if isinstance(node.op, ast.USub) else "a number"
    return _NODE_KIND.get(type(node), "an expression")


class InvalidValue(Exception):
    """A value was rejected; its diagnostic is already recorded."""


class LiteralReader:
    """Reads one value of a call; reports what it rejects or corrects through the compiler."""

    c: _Compiler


    def reject(self, node: ast.AST, expected: str) -> NoReturn:
        self.c.error(node, f"expected {expected}, found {describe_node(node)}: Canvas code is read as data, "
                     "so values must be written as literals")
        raise InvalidValue

    def string(self, node: ast.expr) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            if self.c.unicode_escapes and SURROGATE.search(value):  # '\\ud800': no text holds them
                lone = lone_surrogate(value)
                if lone is not None:
                    self.c.error(node, not_text_message(lone))
                    raise InvalidValue
                self.c.warn(node, pair_message(value))
                value = joined_pairs(value)
            return value
        self.reject(node, "a string literal")

    def name(self, node: ast.expr) -> str:
        value = self.string(node)
        if not value.strip():
            self.c.error(node, "a region name must not be empty")
            raise InvalidValue
        return value

    def strings(self, node: ast.expr) -> list[str]:
        if isinstance(node, ast.Tuple):
            self.c.warn(node, "detailed_descriptions should be a list; read this tuple as one")
        elif not isinstance(node, ast.List):
            self.reject(node, "a list of string literals")
        if len(node.elts) > MAX_LIST_ITEMS:
            self.c.error(node.elts[MAX_LIST_ITEMS], f"more than {MAX_LIST_ITEMS:,} items in one list; "
                         "a region's detailed descriptions are a few sentences")
            raise InvalidValue
        out, failed = [], False
        for item in node.elts:
            try:
                out.append(self.string(item))
            except InvalidValue:
                failed = True
        if failed:
            raise InvalidValue
        return out

    def number(self, node: ast.expr) -> int | float:
        sign, inner = 1, node
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            sign, inner = (-1 if isinstance(node.op, ast.USub) else 1), node.operand
        if (isinstance(inner, ast.Constant) and isinstance(inner.value, (int, float))
                and not isinstance(inner.value, bool)):
            return sign * inner.value
        self.reject(node, "a number")

    def shown(self, node: ast.expr) -> str:
        """A number as written (never converted to text: it may have thousands of digits)."""
        return shown_number(self.c.source_of(node))

    def depth(self, node: ast.expr) -> int | float:
        value = self.number(node)
        if not 0 < value <= 1e300:  # also false for NaN; ints this large never reach float()
            self.c.error(node, f"distance_to_viewer must be a positive finite number, not {self.shown(node)}")
            raise InvalidValue
        return value

    def feather(self, node: ast.expr) -> int | float:
        value = self.number(node)
        if not 0 <= value <= GRID:
            self.c.error(node, f"feather is a width in grid cells, from 0 to {GRID}; not {self.shown(node)}")
            raise InvalidValue
        return value

    def weight(self, node: ast.expr) -> int | float:
        value = self.number(node)
        if not 0 < value <= 100:
            self.c.error(node, f"weight must be above 0 and at most 100, not {self.shown(node)}")
            raise InvalidValue
        return value

    def bbox(self, node: ast.expr) -> Box:
        if not isinstance(node, (ast.List, ast.Tuple)) or len(node.elts) != 4:
            self.reject(node, "bbox=[x, y, w, h]: four integers on the 90 x 90 grid")
        nums = []
        for item in node.elts:
            n = self.number(item)
            if isinstance(n, float):
                if not n.is_integer():
                    self.c.error(item, f"bbox values are whole grid cells; {self.shown(item)} is not")
                    raise InvalidValue
                n = int(n)
            nums.append(n)
        x, y, w, h = nums
        if not (0 <= x <= GRID and 0 <= y <= GRID and 1 <= w <= GRID and 1 <= h <= GRID):
            got = ", ".join(self.shown(item) for item in node.elts)
            self.c.error(node, f"bbox=[x, y, w, h] needs 0 <= x, y <= {GRID} and 1 <= w, h <= {GRID}; got [{got}]")
            raise InvalidValue
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
            raise InvalidValue
        self.c.warn(node, f"automatically corrected {what} {value!r} -> {match[0]!r}")
        return match[0]


def did_you_mean(word: str, options) -> str:
    options = list(options)
    if len(word) > 2 * max(map(len, options), default=0):  # no match at 0.6, and difflib costs
        return ""  # ~40 bytes a character of the word (an 8 MB name: 300 MB)
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""
