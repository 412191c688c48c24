"""The classic LLM slip, an unescaped quote inside a string literal (Omost issue 88), repaired.

``'Surrounding the 'O' are ...',`` does not parse. A line that holds one string literal
(optionally ``key=`` before it and ``,`` or closing brackets after it), whose body holds the same
quote unescaped, is re-quoted with the other quote when the body has none of those, else escaped.

All the broken lines are planned at once, from the first syntax error on, so a program with
fifty of them is parsed a few times, not fifty: a later line is planned only if it cannot be
code as it stands (its literal part is no expression), and the parser has the last word.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass

MAX_CHECKED = 1_000  # suspicious lines examined after the first error; each costs a small parse

_QUOTED_LINE = re.compile(
    r"^(?P<head>\s*(?:[A-Za-z_]\w*\s*=\s*)?)(?P<q>['\"])(?P<body>.*)(?P=q)(?P<tail>\s*[,)\]]*\s*)$"
)
_TRIPLE_START = re.compile(r"[rRbBuUfF]{0,2}(?:'''|\"\"\")")


@dataclass(frozen=True)
class Repair:
    line: int  # 1-based
    col: int  # 1-based character column of the repaired literal
    text: str  # the whole repaired line


def repair_line(line: str, *, only_if_broken: bool = False) -> tuple[int, str] | None:
    """(column, repaired line) when ``line`` is a string literal with an unescaped quote inside.

    With ``only_if_broken``, a line whose literal part is valid as it stands (``'a' 'b'``,
    ``'a' + 'b'``, ``'a', 'b'``) is left alone.
    """
    m = _QUOTED_LINE.match(line)
    if not m:
        return None
    q, body = m.group("q"), m.group("body")
    if q not in body.replace("\\" + q, "") or '"""' in line or "'''" in line:
        return None
    if only_if_broken:
        try:
            with warnings.catch_warnings():  # an invalid escape is reported once, by the real parse
                warnings.simplefilter("ignore")
                ast.parse(q + body + q, mode="eval")
            return None
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            pass
    other = "'" if q == '"' else '"'
    if other not in body:
        literal = other + body.replace("\\" + q, q) + other
    else:
        literal = q + re.sub(r"(?<!\\)" + re.escape(q), "\\" + q, body) + q
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(literal)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(value, str):
        return None
    return len(m.group("head")) + 1, m.group("head") + literal + m.group("tail")


def plan_repairs(lines: list[str], error_line: int, limit: int) -> list[Repair]:
    """The repairs to try: the line of the first syntax error (if it is repairable), then every
    later line that is broken the same way, ``limit`` at most."""
    if not 1 <= error_line <= len(lines):
        return []
    first = repair_line(lines[error_line - 1])
    if first is None:
        return []
    plan = [Repair(error_line, *first)]
    checked = 0
    for i in range(error_line, len(lines)):
        if len(plan) >= limit or checked >= MAX_CHECKED:
            break
        line = lines[i]
        if "'" not in line and '"' not in line:
            continue
        m = _QUOTED_LINE.match(line)
        if not m or m.group("q") not in m.group("body"):
            continue
        checked += 1
        found = repair_line(line, only_if_broken=True)
        if found is not None:
            plan.append(Repair(i + 1, *found))
    return plan


def applied(lines: list[str], plan: list[Repair]) -> str:
    out = list(lines)
    for r in plan:
        out[r.line - 1] = r.text
    return "\n".join(out)


def inside_long_strings(module: ast.Module, lines: list[str], plan: list[Repair]) -> set[int]:
    """The planned lines that turned out to lie inside a triple-quoted string: text, not code."""
    planned = {r.line for r in plan}
    inside: set[int] = set()
    for node in ast.walk(module):
        if not isinstance(node, (ast.Constant, ast.JoinedStr)):
            continue
        start, end = node.lineno, node.end_lineno or node.lineno
        if end == start or not any(start < n <= end for n in planned):
            continue
        head = lines[start - 1].encode("utf-8")[node.col_offset:node.col_offset + 8].decode("utf-8", "ignore")
        if _TRIPLE_START.match(head):
            inside.update(n for n in planned if start < n <= end)
    return inside
