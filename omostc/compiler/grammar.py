"""A grammar of Canvas programs, built from the compiler's own tables so the two cannot drift.

It describes the answers the Omost models write: an optional ```` ```python ```` fence,
``canvas = Canvas()``, one ``set_global_description(...)`` and any number of
``add_local_description(...)`` calls with keyword arguments in Omost's order, string literals in
either quote (no control characters; of escapes only ``\\'``, ``\\"`` and ``\\\\``), the exact
location/offset/area strings, positive finite depths, the 149 colour names, and ``#`` comment
lines as the models write them. Every string it accepts compiles (``tests/test_grammar.py`` samples it to check).

``canvas_gbnf()`` renders it as GBNF (llama.cpp's grammar format, which xgrammar also reads);
``sample()`` draws random programs from it, for tests and fuzzing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeAlias

from omostc.spec.tables import AREAS, COLORS, LOCATIONS, OFFSETS


@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class Ref:
    rule: str


@dataclass(frozen=True)
class Chars:
    """Any one character except these (and control characters)."""

    excluded: str


@dataclass(frozen=True)
class Rep:
    item: Item
    low: int = 0
    high: int | None = None  # None: unbounded


Item: TypeAlias = Lit | Ref | Chars | Rep
Rules: TypeAlias = dict[str, list[list[Item]]]


# llama.cpp refuses a repetition bound of MAX_REPETITION_THRESHOLD (2,000) or more ("failed to
# parse grammar"; fixed only in its builds from September 2026): every bound stays under it.
MAX_REPETITION = 1999


@dataclass(frozen=True)
class Limits:
    """Upper bounds that make every path through the grammar finite. The defaults admit
    everything the models write (their strings are under 400 characters, their answers under 10
    regions); ``omostc.compiler.budget`` derives tighter ones from a token budget."""

    string: int = 1000  # characters in one string literal
    items: int = 64  # detailed descriptions in one list
    regions: int = 100
    comments: int = 8  # comment lines before a call
    comment: int = 400  # characters in one comment

    def __post_init__(self):
        for name, value in vars(self).items():
            if not (isinstance(value, int) and 0 <= value <= MAX_REPETITION):
                raise ValueError(f"grammar limit {name} must be 0 to {MAX_REPETITION}, not {value!r}")


_ESCAPES: list[list[Item]] = [[Lit("\\'")], [Lit('\\"')], [Lit("\\\\")]]


def _enum(values) -> list[list[Item]]:
    return [[Lit(q + v + q)] for v in values for q in ("'", '"')]


def _kwarg(name: str, value: Item) -> list[Item]:
    return [Lit(f"    {name}="), value, Lit(",\n")]


@lru_cache(maxsize=8)
def canvas_rules(limits: Limits = Limits()) -> Rules:
    comments = Rep(Ref("comment"), 0, limits.comments)
    string_list: list[Item] = [Lit("[\n"), Rep(Ref("list-item"), 0, limits.items), Lit("    ]")]
    return {
        # The last call's line end is optional (a bare answer may end at its ``)``).
        "root": [[Lit("```python\n"), Ref("program"), Lit("\n```")], [Ref("program"), Rep(Ref("blank"), 0, 1)]],
        "program": [[comments, Lit("canvas = Canvas()\n"), Rep(Ref("blank"), 0, 1),
                     comments, Ref("global"), Rep(Ref("region"), 0, limits.regions)]],
        "global": [[Lit("canvas.set_global_description(\n"),
                    *_kwarg("description", Ref("string")),
                    *_kwarg("detailed_descriptions", Ref("strings")),
                    *_kwarg("tags", Ref("string")),
                    *_kwarg("HTML_web_color_name", Ref("color")),
                    Lit(")")]],
        "region": [[Lit("\n"), Rep(Ref("blank"), 0, 1), comments, Lit("canvas.add_local_description(\n"),
                    *_kwarg("location", Ref("location")),
                    *_kwarg("offset", Ref("offset")),
                    *_kwarg("area", Ref("area")),
                    *_kwarg("distance_to_viewer", Ref("depth")),
                    *_kwarg("description", Ref("string")),
                    *_kwarg("detailed_descriptions", Ref("strings")),
                    *_kwarg("tags", Ref("string")),
                    *_kwarg("atmosphere", Ref("string")),
                    *_kwarg("style", Ref("string")),
                    *_kwarg("quality_meta", Ref("string")),
                    *_kwarg("HTML_web_color_name", Ref("color")),
                    Lit(")")]],
        "strings": [string_list],
        "list-item": [[Lit("        "), Ref("string"), Lit(",\n")]],
        "string": [[Lit("'"), Rep(Ref("sq-char"), 0, limits.string), Lit("'")],
                   [Lit('"'), Rep(Ref("dq-char"), 0, limits.string), Lit('"')]],
        # Python reads these escapes as the character itself; others (``\\n``) are not Omost's text
        "sq-char": [[Chars("'\\")], *_ESCAPES],
        "dq-char": [[Chars('"\\')], *_ESCAPES],
        "comment": [[Lit("# "), Rep(Chars(""), 0, limits.comment), Lit("\n")]],
        "blank": [[Lit("\n")]],
        # Positive and finite: 1 to 4 integer digits, not all of a zero value.
        "depth": [[Ref("nonzero"), Rep(Ref("digit"), 0, 3), Rep(Ref("fraction"), 0, 1)],
                  [Lit("0."), Rep(Ref("digit"), 0, 3), Ref("nonzero"), Rep(Ref("digit"), 0, 3)]],
        "fraction": [[Lit("."), Ref("digit"), Rep(Ref("digit"), 0, 5)]],
        "digit": [[Lit(str(d))] for d in range(10)],
        "nonzero": [[Lit(str(d))] for d in range(1, 10)],
        "location": _enum(LOCATIONS),
        "offset": _enum(OFFSETS),
        "area": _enum(AREAS),
        "color": _enum(COLORS),
    }


# --- GBNF ---------------------------------------------------------------------------------------

def _gbnf_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _gbnf_item(item: Item) -> str:
    if isinstance(item, Lit):
        return _gbnf_literal(item.text)
    if isinstance(item, Ref):
        return item.rule
    if isinstance(item, Chars):
        excluded = "".join("\\" + c if c in "\\]^-" else c for c in item.excluded)
        return f"[^{excluded}\\x00-\\x1f\\x7f]"
    inner = _gbnf_item(item.item)
    if item.high is None:
        return f"{inner}*" if item.low == 0 else f"{inner}+"
    if (item.low, item.high) == (0, 1):
        return f"{inner}?"
    return f"{inner}{{{item.low},{item.high}}}"


def canvas_gbnf(limits: Limits = Limits()) -> str:
    """The grammar in GBNF (llama.cpp server ``grammar``; xgrammar reads it too)."""
    lines = []
    for name, alternatives in canvas_rules(limits).items():
        body = " | ".join(" ".join(_gbnf_item(i) for i in alt) for alt in alternatives)
        lines.append(f"{name} ::= {body}")
    return "\n".join(lines) + "\n"


# --- sampling -----------------------------------------------------------------------------------

_SAMPLE_CHARS = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,.;:!?'\"()-éü猫—’\\#"


def sample(rng: random.Random, rule: str = "root", *, mean_repeat: float = 1.5, limits: Limits = Limits()) -> str:
    """A random string of the grammar (repetitions geometric with the given mean)."""
    rules = canvas_rules(limits)
    out: list[str] = []

    def emit(item: Item) -> None:
        if isinstance(item, Lit):
            out.append(item.text)
        elif isinstance(item, Ref):
            for part in rng.choice(rules[item.rule]):
                emit(part)
        elif isinstance(item, Chars):
            out.append(rng.choice([c for c in _SAMPLE_CHARS if c not in item.excluded]))
        else:
            count = item.low
            while (item.high is None or count < item.high) and rng.random() < mean_repeat / (1 + mean_repeat):
                count += 1
            for _ in range(count):
                emit(item.item)

    emit(Ref(rule))
    return "".join(out)
