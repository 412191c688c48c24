"""YAML 1.2 data, read within bounds: what scene specs, profiles and PNG spec chunks are parsed with.

PyYAML reads YAML 1.1, where ``017`` is 15, ``1:30`` is 90, ``1_000`` is 1000, ``yes`` is true
and ``5e0`` is text. Here scalars follow the YAML 1.2 core schema: integers ``[-+]?[0-9]+``,
``0o17`` and ``0x1F``; floats such as ``5e0``, ``1e-3``, ``.5``, ``.inf`` and ``.nan``; booleans
``true`` and ``false`` only; null as ``null``, ``~`` or nothing; everything else is text. A
decimal integer with a leading zero (``017``: 15 to YAML 1.1, 17 to YAML 1.2) is refused as
ambiguous.

The document is composed from the parser's events without recursion (libyaml's C parser where
PyYAML has it), and the Python data is built at the same time, so nothing is ever constructed
from an unchecked tree. Problems are collected with the mark of the node they concern:

* nesting deeper than ``MAX_DEPTH`` lists and mappings, more than ``MAX_EXPANDED_NODES`` values
  once aliases are expanded (alias bombs), and aliases to a node that contains them;
* tags other than the core schema's (``!!python/object``, ``!!binary``, local tags);
* duplicate keys, keys that are not text, YAML 1.1 merge keys (``<<``);
* integers longer than ``MAX_INT_DIGITS`` digits, leading-zero integers, and lone UTF-16
  surrogates (``"\\ud800"``), which are not characters (escaped pairs, as JSON writes them, are
  joined into their character; libyaml refuses them, so such a document is read by PyYAML's own
  parser).

A block scalar's (``|`` or ``>``) trailing whitespace, such as its final line break, is dropped,
unless its header asks to keep it (``|+``, ``>+``): then it reads exactly as YAML defines.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_DEPTH = 64  # levels of lists and mappings; a scene spec needs 4, a profile 3
MAX_EXPANDED_NODES = 1_000_000  # values once aliases are expanded: guards against "billion laughs"
MAX_INT_DIGITS = 30  # a seed has at most 19; Python refuses to convert integers over 4,300 digits
MAX_PROBLEMS = 50
TOO_DEEP = f"nested too deeply: more than {MAX_DEPTH} levels of lists and mappings (a scene spec needs 4)"

PREFIX = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, SEQ, MAP = (PREFIX + t for t in ("str", "int", "float", "bool", "null", "seq", "map"))

INT_RE = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
FLOAT_RE = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                      r"|\.(?:nan|NaN|NAN)")
BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
NULLS = ("", "~", "null", "Null", "NULL")
_LEADING_ZERO = re.compile(r"[-+]?0[0-9]+")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# YAML's printable characters (tab, line breaks, and no C0/C1 controls, surrogates or U+FFFE/F)
NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def resolve(value: str, plain: bool) -> str:
    """The YAML 1.2 core schema tag of an untagged scalar."""
    if not plain:
        return STR
    if value in NULLS:
        return NULL
    if value in BOOLS:
        return BOOL
    if value[:1] in "-+.0123456789":
        if INT_RE.fullmatch(value):
            return INT
        if FLOAT_RE.fullmatch(value):
            return FLOAT
    return STR


def core_resolvers() -> dict[str, list[tuple[str, re.Pattern]]]:
    """``resolve`` as PyYAML's class-level implicit resolver table."""
    table: dict[str, list[tuple[str, re.Pattern]]] = {}
    rules = [(BOOL, re.compile("^(?:" + "|".join(BOOLS) + ")$"), "tTfF"),
             (NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]),
             (INT, re.compile(f"^(?:{INT_RE.pattern})$"), "-+0123456789"),
             (FLOAT, re.compile(f"^(?:{FLOAT_RE.pattern})$"), "-+.0123456789")]
    for tag, regexp, first in rules:
        for ch in first:
            table.setdefault(ch, []).append((tag, regexp))  # "": the empty scalar
    return table


def shown(text: str, limit: int = 16) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def tag_name(tag: str) -> str:
    return "!!" + tag[len(PREFIX):] if tag.startswith(PREFIX) else tag


class ScalarNode(yaml.ScalarNode):
    """A node with its Python value (``data``) and its size once aliases are expanded."""

    data: Any = None
    size: int = 1  # values, once aliases are expanded
    height: int = 0  # levels of lists and mappings, once aliases are expanded


class MappingNode(yaml.MappingNode):
    data: Any = None
    size: int = 1
    height: int = 1


class SequenceNode(yaml.SequenceNode):
    data: Any = None
    size: int = 1
    height: int = 1


class SpecYAMLError(yaml.YAMLError):
    """Located problems found while composing a document: (message, mark) pairs."""

    def __init__(self, problems: list[tuple[str, Any]]):
        super().__init__("; ".join(message for message, _ in problems))
        self.problems = problems


class _Stop(Exception):
    """A problem after which the rest of the document is not read."""


def _number_problem(value: str) -> str | None:
    """Why an integer literal is refused, or None."""
    digits = value.lstrip("-+")
    if digits[:2] in ("0o", "0x"):
        digits = digits[2:]
    if len(digits) > MAX_INT_DIGITS:
        lead = value[:16]
        return (f"the number {lead}... ({len(digits)} digits) is too long: numbers here have at most "
                f"{MAX_INT_DIGITS} digits")
    if _LEADING_ZERO.fullmatch(value):
        sign = value[0] if value[0] in "-+" else ""
        plain = sign.replace("+", "") + (digits.lstrip("0") or "0")
        octal = f", or 0o{digits.lstrip('0') or '0'} for octal" if not sign and set(digits) <= set("01234567") else ""
        return (f"{value} has a leading zero, which YAML 1.1 reads as octal and YAML 1.2 does not: "
                f"write {plain}{octal} (or '{value}' in quotes for text)")
    return None


def _int(value: str) -> int:
    if value.startswith("0o"):
        return int(value[2:], 8)
    if value.startswith("0x"):
        return int(value[2:], 16)
    return int(value, 10)


def _float(value: str) -> float:
    low = value.lower()
    if low.endswith((".inf", ".nan")):
        return float(low.replace(".", ""))
    return float(value)


class _Composer:
    """Builds the node tree and the data of one document from a PyYAML parser's events."""

    def __init__(self, parser):
        self.parser = parser
        self.source: str = getattr(parser, "source", "")
        self.problems: list[tuple[str, Any]] = []
        self.anchors: dict[str, Any] = {}
        self.open: set[int] = set()

    def problem(self, message: str, mark, *, stop: bool = False) -> None:
        self.problems.append((message, mark))
        if stop or len(self.problems) >= MAX_PROBLEMS:
            raise _Stop

    def document(self):
        """The single document of the stream as a node whose ``data`` is its Python value, or None."""
        parser = self.parser
        parser.get_event()  # StreamStartEvent
        root = None
        if not parser.check_event(yaml.StreamEndEvent):
            parser.get_event()  # DocumentStartEvent
            try:
                root = self._compose()
            except _Stop:
                raise SpecYAMLError(self.problems) from None
            parser.get_event()  # DocumentEndEvent
            if not parser.check_event(yaml.StreamEndEvent):
                self.problem("expected a single document, but found another", parser.peek_event().start_mark)
        if self.problems:
            raise SpecYAMLError(self.problems)
        parser.get_event()
        return root

    def _compose(self):
        parser = self.parser
        stack: list[list[Any]] = []  # [node, data, pending key node, expanded size, keys seen, height]
        while True:
            event = parser.get_event()
            kind = type(event)
            if kind is yaml.ScalarEvent:
                node = self._scalar(event)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                if len(stack) >= MAX_DEPTH:
                    self.problem(TOO_DEEP, event.start_mark, stop=True)
                mapping = kind is yaml.MappingStartEvent
                tag = event.tag if event.tag not in (None, "!") else MAP if mapping else SEQ
                if tag != (MAP if mapping else SEQ):
                    self.problem(f"invalid YAML here: the tag {tag_name(tag)} is not allowed, only plain data "
                                 "(text, numbers, true/false, null, lists and mappings)", event.start_mark)
                node = (MappingNode if mapping else SequenceNode)(tag, [], event.start_mark, None,
                                                                  flow_style=event.flow_style)
                node.data = {} if mapping else []
                node.size = 1
                if event.anchor is not None:
                    self.anchors[event.anchor] = node
                self.open.add(id(node))
                stack.append([node, node.data, None, 1, {} if mapping else None, 0])
                continue
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                frame = stack.pop()
                node = frame[0]
                node.end_mark = event.end_mark
                node.size, node.height = frame[3], 1 + frame[5]
                self.open.discard(id(node))
            elif kind is yaml.AliasEvent:
                node = self.anchors.get(event.anchor)
                if node is None:
                    self.problem(f"found undefined alias *{event.anchor}", event.start_mark, stop=True)
                elif id(node) in self.open:
                    self.problem(f"the alias *{event.anchor} is inside the node it refers to (a recursive "
                                 "structure)", event.start_mark, stop=True)
                elif len(stack) + node.height > MAX_DEPTH:  # an alias nests what it names one level deeper
                    self.problem(TOO_DEEP, event.start_mark, stop=True)
            else:  # pragma: no cover - the parser emits nothing else inside a document
                raise yaml.YAMLError(f"unexpected {event}")
            if not stack:
                return node
            self._add(stack[-1], node)

    def _add(self, frame: list[Any], node) -> None:
        frame[3] += node.size
        frame[5] = max(frame[5], node.height)
        if frame[3] > MAX_EXPANDED_NODES:
            self.problem(f"document too large once aliases are expanded (more than {MAX_EXPANDED_NODES:,} values)",
                         node.start_mark, stop=True)
        parent = frame[0]
        if frame[4] is None:  # a sequence
            parent.value.append(node)
            frame[1].append(node.data)
        elif frame[2] is None:  # a mapping's key
            frame[2] = node
        else:
            key, frame[2] = frame[2], None
            parent.value.append((key, node))
            name = self._key(key, frame[4])
            if name is not None:
                frame[1][name] = node.data

    def _key(self, key, seen: dict[str, Any]) -> str | None:
        if not isinstance(key, ScalarNode):
            self.problem(f"a key must be a name, not a {'mapping' if isinstance(key, MappingNode) else 'list'}",
                         key.start_mark)
            return None
        if key.tag != STR:
            what = {NULL: "null", BOOL: "true or false", INT: "a number", FLOAT: "a number"}.get(key.tag, "not text")
            self.problem(f"the key {shown(key.value) or 'null'} is {what}: keys are names (write '{shown(key.value)}' "
                         "in quotes if it is one)", key.start_mark)
            return None
        if key.value == "<<" and not key.style:  # plain: None (PyYAML) or "" (libyaml)
            self.problem("merge keys (<<) are YAML 1.1, not YAML 1.2: write the keys out", key.start_mark)
            return None
        if key.value in seen:
            self.problem(f"duplicate key {shown(key.value, 60)!r} (first at line {seen[key.value].line + 1})",
                         key.start_mark)
            return None
        seen[key.value] = key.start_mark
        return key.value

    def _scalar(self, event):
        value = event.value
        if event.tag is None:
            tag = resolve(value, event.implicit[0])  # implicit[0]: a plain scalar
        elif event.tag == "!":
            tag = STR
        else:
            tag = event.tag
        if event.style in ("|", ">") and tag == STR and not _keeps(self.source, event.start_mark):
            value = value.rstrip()
        data = self._value(tag, value, event.start_mark)
        node = ScalarNode(tag, data if tag == STR and data is not None else value, event.start_mark, event.end_mark,
                          style=event.style)
        node.size = 1
        node.data = data
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        return node

    def _text(self, value: str, mark) -> str | None:
        """A string; escaped UTF-16 surrogate pairs (``"\\ud83d\\ude00"``, as JSON writes them) are
        joined into their character, and a lone surrogate, which is not a character, is refused."""
        if not _SURROGATE.search(value):
            return value
        try:
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        except UnicodeDecodeError as exc:
            code = f"\\u{ord(value[exc.start // 2]):04x}"
        self.problem(f"{code} is a lone UTF-16 surrogate, not a character: write the character itself, or its "
                     "code point (\\U0001F600), or a high and low surrogate pair (\\ud83d\\ude00)", mark)
        return None

    def _value(self, tag: str, value: str, mark) -> Any:
        if tag == STR:
            return self._text(value, mark)
        if tag == INT and INT_RE.fullmatch(value):
            why = _number_problem(value)
            if why:
                self.problem(why, mark)
                return None
            return _int(value)
        if tag == FLOAT and FLOAT_RE.fullmatch(value):
            return _float(value)
        if tag == FLOAT and INT_RE.fullmatch(value):  # !!float 0x1F
            why = _number_problem(value)
            if why:
                self.problem(why, mark)
                return None
            return float(_int(value))
        if tag == BOOL and value in BOOLS:
            return BOOLS[value]
        if tag == NULL and value in NULLS:
            return None
        if tag in (INT, FLOAT, BOOL, NULL):
            self.problem(f"{shown(value)!r} is not {'an integer' if tag == INT else tag_name(tag)[2:]} "
                         f"(tagged {tag_name(tag)})", mark)
        else:
            self.problem(f"invalid YAML here: the tag {tag_name(tag)} is not allowed, only plain data (text, numbers, "
                         "true/false, null, lists and mappings)", mark)
        return None


_BLOCK_HEADER = re.compile(r"[|>](?:[1-9]?[-+]?|[-+][1-9])")


def _keeps(source: str, mark) -> bool:
    """Whether the block scalar at ``mark`` has the keep chomping indicator (``|+``, ``>2+``)."""
    index = getattr(mark, "index", -1)
    header = _BLOCK_HEADER.match(source, index) if 0 <= index < len(source) else None
    return header is not None and "+" in header.group()


class _CoreLoading:
    """What the spec loaders change in PyYAML's SafeLoader and CSafeLoader: YAML 1.2 core scalars,
    and a bounded, non-recursive composer that builds the data as it goes. The document's text is
    kept for the block scalars' headers, which the parsers' events do not carry."""

    yaml_implicit_resolvers = core_resolvers()

    def __init__(self, stream):
        super().__init__(stream)  # type: ignore[call-arg]  # a mixin: the next class is a PyYAML loader
        self.source = stream if isinstance(stream, str) else ""

    def get_single_node(self):
        return _Composer(self).document()

    def construct_document(self, node):
        return node.data

    def get_single_data(self):
        node = self.get_single_node()
        return None if node is None else node.data


class PySpecLoader(_CoreLoading, yaml.SafeLoader):
    """The pure-Python parser, for PyYAML built without libyaml."""


LOADERS: list[type] = [PySpecLoader]
if getattr(yaml, "__with_libyaml__", False):
    class CSpecLoader(_CoreLoading, yaml.CSafeLoader):
        """libyaml's C parser: about 5 times faster; its events carry the same line and column marks."""

    LOADERS.insert(0, CSpecLoader)
LOADER = LOADERS[0]


def add_core_resolvers(dumper: type) -> None:
    """Make a dumper quote every string that either YAML 1.1 or the 1.2 core schema would read as
    something else (``'017'``, ``'1:30'``, ``'yes'``, ``'0o17'``, ``'5e0'``), so what it writes reads
    back the same here and in YAML 1.1 tools. ``add_implicit_resolver`` copies the class's table first."""
    for first, rules in core_resolvers().items():
        for tag, regexp in rules:
            dumper.add_implicit_resolver(tag, regexp, [first])  # type: ignore[attr-defined]
