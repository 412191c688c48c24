"""Scene specs as YAML: safe, bounded, located loading and stable, readable writing.

Loading reads at most ``MAX_SPEC_BYTES``, composes the YAML 1.2 node tree and its data without
recursion (``omostc.spec.yamlcore``: libyaml's C parser where present; no Python object is ever
built from a tag), validates the data against the JSON Schema, and reports each violation at
the YAML line of the offending key or value. Integers written as floats (``896.0``, which JSON
Schema counts as integers) are read as integers.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from omostc.diagnostics import Diagnostic, InputError, SpecError, printable
from omostc.files import read_text
from omostc.spec import yamlcore
from omostc.spec.model import Scene, scene_from_dict, scene_to_dict
from omostc.spec.schema import SCHEMA_ID, scene_validator

LOADERS = yamlcore.LOADERS  # libyaml's parser first where present, then the pure-Python one
MAX_DEPTH = yamlcore.MAX_DEPTH
MAX_EXPANDED_NODES = yamlcore.MAX_EXPANDED_NODES
MAX_INT_DIGITS = yamlcore.MAX_INT_DIGITS

SCHEMA_RELPATH = Path("schemas") / "scene.schema.json"
MAX_SPEC_BYTES = 8 * 1024 * 1024  # as Canvas inputs; 6.5 MiB validates in about 3.5 s with libyaml
MAX_SHOWN = 100  # schema violations reported per file


# --- loading --------------------------------------------------------------------------------

def read_yaml_text(path: str | os.PathLike, what: str = "scene spec") -> str:
    """A UTF-8 YAML file (``-`` is standard input) of at most ``MAX_SPEC_BYTES``, read as every
    input is (``files.read_text``: no more than the limit and one byte); its errors as SpecError."""
    try:
        return read_text(path, limit=MAX_SPEC_BYTES)
    except InputError as exc:
        raise SpecError(exc.diagnostics) from None


def _too_large(what: str) -> str:
    return f"larger than 8 MiB: a {what} may hold at most {MAX_SPEC_BYTES:,} bytes"


def load_spec(path: str | os.PathLike) -> Scene:
    return loads_spec(read_yaml_text(path), file=str(path))


def loads_spec(text: str, *, file: str = "<spec>", loader: type | None = None) -> Scene:
    data = load_validated(text, file=file, validator=scene_validator(), loader=loader,
                          empty="empty file: a scene spec needs at least 'version' and 'global'")
    return scene_from_dict(data)


def load_validated(text: str, *, file: str, validator, empty: str, loader: type | None = None) -> Any:
    """Safe-load one YAML document (YAML 1.2 core schema, bounded in size, depth, expansion and
    number length) and check it against a JSON Schema validator; every problem is raised as a
    located SpecError. ``loader``: one of ``LOADERS`` (default: libyaml's where present)."""
    text = str(text)  # a PNG's text chunk is a str subclass, which libyaml's parser refuses
    lines: list[str] = []

    def diag(message: str, mark=None) -> Diagnostic:
        if mark is None:
            return Diagnostic("error", message, file=file)
        if not lines:
            lines.extend(text.splitlines())
        source = lines[mark.line] if mark.line < len(lines) else None
        return Diagnostic("error", printable(message), file=file, line=mark.line + 1, col=mark.column + 1,
                          source_line=printable(source) if source is not None else None)

    if len(text) > MAX_SPEC_BYTES:
        raise SpecError([diag(_too_large("YAML document"))])
    bad = yamlcore.NOT_PRINTABLE.search(text)
    if bad:
        raise SpecError([diag(_unprintable(bad.group()), _mark_at(text, bad.start()))])
    node = _compose(text, loader or yamlcore.LOADER, diag)
    if node is None or node.data is None:
        raise SpecError([diag(empty)])
    data = node.data
    problems = validate_data(data, validator)
    diagnostics = [diag(msg, _node_at(node, path, key_of_last)) for msg, path, key_of_last in problems[:MAX_SHOWN]]
    if len(problems) > MAX_SHOWN:
        diagnostics.append(diag(f"... and {len(problems) - MAX_SHOWN} more problems"))
    if diagnostics:
        raise SpecError(diagnostics)
    integral_floats_to_int(data, validator.schema)
    return data


def _compose(text: str, loader: type, diag):
    """The document's root node (its ``data`` built), or None for an empty stream."""
    parser = loader(text)
    try:
        return parser.get_single_node()
    except yamlcore.SpecYAMLError as exc:
        raise SpecError([diag(message, mark) for message, mark in exc.problems]) from None
    except yaml.MarkedYAMLError as exc:
        if exc.problem == "found invalid Unicode character escape code" and loader is not yamlcore.PySpecLoader:
            pass  # libyaml refuses every surrogate escape, JSON's pairs too: PyYAML's own parser reads them
        else:
            raise SpecError([diag(_yaml_message(exc), exc.problem_mark or exc.context_mark)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([diag(f"invalid YAML: {exc}")]) from None
    except ValueError:  # PyYAML's own scanner: chr() of an escape above \U0010FFFF
        raise SpecError([diag("invalid YAML: an escape that names no Unicode character (above \\U0010FFFF)",
                              getattr(parser, "get_mark", lambda: None)())]) from None
    finally:
        parser.dispose()
    return _compose(text, yamlcore.PySpecLoader, diag)


class _Mark(NamedTuple):
    line: int  # 0-based, as PyYAML's marks
    column: int


def _mark_at(text: str, pos: int) -> _Mark:
    """The mark of ``text[pos]``, counting line breaks as YAML does (nothing before ``pos`` is a
    control character: ``pos`` is the first)."""
    rows = (text[:pos] + "x").splitlines()
    return _Mark(len(rows) - 1, len(rows[-1]) - 1)


def _unprintable(ch: str) -> str:
    code = f"\\u{ord(ch):04x}"
    if "\ud800" <= ch <= "\udfff":
        return (f"{code} is a lone UTF-16 surrogate, not a character: the text was decoded wrongly, or a "
                "surrogate pair was split")
    return f"invalid YAML: the control character {code} is not allowed (write it as an escape in double quotes)"


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    if exc.problem and "maximum nesting depth" in exc.problem:  # libyaml stops at 1,000 levels
        return yamlcore.TOO_DEEP
    return "invalid YAML: " + (" ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML")


def integral_floats_to_int(data: Any, schema: dict[str, Any]) -> None:
    """Where ``schema`` asks for an integer (or an integer constant), an integral float such as
    ``896.0`` (an integer to JSON Schema) becomes the int 896, in place."""
    stack = [(data, schema)]
    while stack:
        value, rules = stack.pop()
        if isinstance(value, dict):
            props = rules.get("properties", {})
            pairs = [(k, v, props.get(k)) for k, v in value.items()]
        elif isinstance(value, list) and isinstance(rules.get("items"), dict):
            pairs = [(i, v, rules["items"]) for i, v in enumerate(value)]
        else:
            continue
        for key, item, sub in pairs:
            if not isinstance(sub, dict):
                continue
            wants_int = sub.get("type") == "integer" or type(sub.get("const")) is int
            if wants_int and isinstance(item, float) and item.is_integer():
                value[key] = int(item)
            else:
                stack.append((item, sub))


def validate_data(data: Any, validator=None) -> list[tuple[str, list, bool]]:
    """Schema and semantic violations as (message, path, point-at-key) triples."""
    validator = validator or scene_validator()
    found = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        found.append(_explain(error))
    for path in _non_finite_numbers(data, []):
        found.append((f"{_dotted(path)}: must be a finite number", path, False))
    return found


def _explain(error) -> tuple[str, list, bool]:
    path = list(error.absolute_path)
    where = _dotted(path) or "top level"
    v = error.validator
    if v == "additionalProperties":
        extras = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        key = extras[0] if extras else None
        allowed = ", ".join(error.schema.get("properties", {}))
        hint = _suggest(key, error.schema.get("properties", {})) if key is not None else ""
        return f"{where}: unknown key {key!r}{hint} (allowed: {allowed})", path + [key], True
    if v == "not" and error.validator_value == {} and isinstance(error.schema, dict):  # a key not allowed here
        return f"{where}: {error.schema.get('$comment') or 'not allowed here'}", path, True
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"{where}: missing required key {missing!r}", path, False
    if v == "enum":
        hint = _suggest(error.instance, error.validator_value) if isinstance(error.instance, str) else ""
        return f"{where}: {error.instance!r} is not an allowed value{hint}", path, False
    if v == "oneOf" and isinstance(error.instance, dict):
        has = [k for k in ("location", "offset", "area", "box") if k in error.instance]
        return (f"{where}: a region is placed by either 'location', 'offset' and 'area', or by 'box'"
                f" (this one has: {', '.join(has) or 'none of them'})"), path, False
    if v == "type":
        return f"{where}: {_type_message(error.validator_value, error.instance)}", path, False
    if v == "const" and path == ["version"]:
        return (f"version: this omostc reads scene spec version {error.validator_value}, not {error.instance!r}",
                path, False)
    return f"{where}: {error.message}", path, False


_KINDS = {"integer": "a whole number", "number": "a number", "string": "text", "boolean": "true or false",
          "array": "a list", "object": "a mapping of keys to values", "null": "null"}


def _type_message(expected: str | list[str], instance: Any) -> str:
    """A type violation in YAML's words, with how to write the value where it can tell."""
    wanted = [expected] if isinstance(expected, str) else list(expected)
    if isinstance(instance, float) and "integer" in wanted and math.isfinite(instance):
        return f"must be a whole number, not {instance!r}"
    kinds = " or ".join(_KINDS.get(w, w) for w in wanted)
    if instance is None or isinstance(instance, bool):
        found = {None: "null", True: "true", False: "false"}[instance]
    elif isinstance(instance, (list, dict)):
        found = "a list" if isinstance(instance, list) else "a mapping"
    else:
        found = repr(instance if not isinstance(instance, str) or len(instance) <= 60 else instance[:60] + "...")
    hint = ""
    if isinstance(instance, str) and {"integer", "number"} & set(wanted):
        hint = _number_hint(instance)
    elif isinstance(instance, str) and "boolean" in wanted:
        hint = _bool_hint(instance)
    elif "string" in wanted and instance is None:
        hint = " (nothing is written after the colon)"
    elif "string" in wanted and isinstance(instance, (bool, int, float)):
        hint = " (put it in quotes to make it text)"
    return f"expected {kinds}, found {found}{hint}"


_SEXAGESIMAL = re.compile(r"([-+]?)([0-9][0-9_]*)((?::[0-5]?[0-9])+)(\.[0-9_]*)?")
_THOUSANDS = re.compile(r"[-+]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")
YAML_1_1_BOOLS = {"yes", "no", "on", "off", "y", "n"}


def _number_hint(text: str) -> str:
    """How to write a number that YAML 1.2 read as text where a number is expected ("" if unknown)."""
    bare = text.strip()
    if len(bare) > 40:  # no number written that long is meant (and Python converts at most 4,300 digits)
        return ""
    if yamlcore.INT_RE.fullmatch(bare) or yamlcore.FLOAT_RE.fullmatch(bare):
        return f" (a number is written without quotes: {bare})"
    if (m := _SEXAGESIMAL.fullmatch(bare)) is not None:
        value: float = int(m[2].replace("_", ""))
        for part in m[3].split(":")[1:]:
            value = value * 60 + int(part)
        if m[4]:
            value += float("0" + m[4].replace("_", ""))
        shown_value = f"{m[1].replace('+', '')}{value:g}" if m[4] else f"{m[1].replace('+', '')}{value}"
        return f": YAML 1.2 reads {bare} as text (YAML 1.1 read it in base 60, as {shown_value}): write {shown_value}"
    joined = bare.replace("_", "")
    if "_" in bare and (yamlcore.INT_RE.fullmatch(joined) or yamlcore.FLOAT_RE.fullmatch(joined)):
        return f": YAML 1.2 reads {bare} as text: write {joined}, without underscores"
    if re.fullmatch(r"[-+]?0b[01_]+", bare):
        value = int(bare.replace("_", "").replace("0b", ""), 2)
        return f": binary numbers are YAML 1.1 only: write {value}"
    if _THOUSANDS.fullmatch(bare):
        return f": write {bare.replace(',', '')}, without commas"
    return ""


def _bool_hint(text: str) -> str:
    if text.strip().lower() in YAML_1_1_BOOLS:
        return f": YAML 1.2 reads {text.strip()} as text (YAML 1.1 read it as a boolean): write true or false"
    return ""


def _suggest(value, options: Iterable[str]) -> str:
    if value is None:
        return ""
    match = difflib.get_close_matches(str(value).lower(), list(options), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _dotted(path: list) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _non_finite_numbers(data: Any, path: list):
    stack = [(data, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            yield where
        elif isinstance(value, dict):
            stack.extend((v, where + [k]) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, where + [i]) for i, v in enumerate(value))


def _node_at(root, path: list, key_of_last: bool):
    """The start mark of the YAML node at a JSON path (the key's mark when key_of_last)."""
    node, mark = root, root.start_mark
    for i, step in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(step):
                    node, mark = value, (key.start_mark if (last and key_of_last) else value.start_mark)
                    break
            else:
                return mark
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
            mark = node.start_mark
        else:
            return mark
    return mark


# --- writing --------------------------------------------------------------------------------

def _str_representer(dumper: yaml.representer.SafeRepresenter, value: str) -> yaml.ScalarNode:
    # Multi-line text reads best as a literal block; any other unprintable character (NEL and
    # the Unicode line separators are line breaks to YAML) is kept exact by double quotes.
    odd = [] if value.isprintable() else [ch for ch in value if not ch.isprintable()]  # the common case in C
    if odd and set(odd) == {"\n"} and value == value.strip():
        style = "|"
    elif odd or value != value.strip(" "):
        style = '"'
    else:
        style = None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _block_str_representer(dumper: yaml.representer.SafeRepresenter, value: str) -> yaml.ScalarNode:
    # Multi-line text, its trailing line breaks included, as a literal block (written ``|+`` when it
    # ends in one, which the reader keeps); where a block cannot hold the text exactly (spaces at
    # the end of a line, tabs, CR), the emitter writes it double-quoted.
    odd = [] if value.isprintable() else [ch for ch in value if not ch.isprintable()]
    if odd and set(odd) == {"\n"} and value.rstrip("\n") == value.rstrip("\n").rstrip(" "):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return _str_representer(dumper, value)


class _PySpecDumper(yaml.SafeDumper):
    pass


_PySpecDumper.add_representer(str, _str_representer)
yamlcore.add_core_resolvers(_PySpecDumper)


class _BlockDumper(yaml.SafeDumper):
    """For specs with a stored conversation: its turns, multi-line, written as blocks that diff well."""

    def determine_block_hints(self, text: str) -> str:
        hints = super().determine_block_hints(text)
        return hints + "+" if text.endswith("\n") and not hints.endswith("+") else hints  # else clipped on reading


_BlockDumper.add_representer(str, _block_str_representer)
yamlcore.add_core_resolvers(_BlockDumper)

_SpecDumper: type[yaml.SafeDumper] | type[yaml.CSafeDumper]
if getattr(yaml, "__with_libyaml__", False):
    class _CSpecDumper(yaml.CSafeDumper):  # libyaml's emitter: same output, about 6x faster
        pass

    _CSpecDumper.add_representer(str, _str_representer)
    yamlcore.add_core_resolvers(_CSpecDumper)
    _SpecDumper = _CSpecDumper
else:  # pragma: no cover - PyYAML built without libyaml
    _SpecDumper = _PySpecDumper


def dumps_spec(scene: Scene, *, schema_ref: str | None = SCHEMA_ID, dumper=None) -> str:
    """The scene as YAML: block style, keys in spec order, unicode kept, long lines unfolded;
    multi-line text of a stored conversation as literal blocks."""
    if dumper is None:
        dumper = _BlockDumper if scene.provenance and scene.provenance.conversation else _SpecDumper
    body = yaml.dump(scene_to_dict(scene), Dumper=dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=2**30, indent=2)
    if body.endswith("\n...\n"):  # the document end a final |+ block gets: the end of the file ends it too
        body = body[:-4]
    header = f"# yaml-language-server: $schema={schema_ref}\n" if schema_ref else ""
    return header + body


def schema_ref_for(output: str | os.PathLike | None) -> str:
    """Relative path from a spec file to the nearest ``schemas/scene.schema.json``, else the id."""
    if output is None:
        return SCHEMA_ID
    folder = Path(output).resolve().parent
    for parent in (folder, *folder.parents):
        candidate = parent / SCHEMA_RELPATH
        if candidate.is_file():
            return os.path.relpath(candidate, folder).replace(os.sep, "/")
    return SCHEMA_ID
