"""Scene specs as YAML: safe, located loading and stable, readable writing.

Loading composes the YAML node tree once (``SafeLoader``: no Python objects are ever built),
validates the data against the JSON Schema, and reports each violation at the YAML line of
the offending key or value.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from omostc.diagnostics import Diagnostic, SpecError
from omostc.files import InputError, read_text
from omostc.spec.model import Scene, scene_from_dict, scene_to_dict
from omostc.spec.schema import SCHEMA_ID, scene_validator

SCHEMA_RELPATH = Path("schemas") / "scene.schema.json"
MAX_EXPANDED_NODES = 1_000_000  # guards against alias bombs ("billion laughs")


# --- loading --------------------------------------------------------------------------------

def load_spec(path: str | os.PathLike) -> Scene:
    try:
        text = read_text(path)
    except InputError as exc:
        raise SpecError(exc.diagnostics) from None
    return loads_spec(text, file=str(path))


def loads_spec(text: str, *, file: str = "<spec>") -> Scene:
    data = load_validated(text, file=file, validator=scene_validator(),
                          empty="empty file: a scene spec needs at least 'version' and 'global'")
    return scene_from_dict(data)


def load_validated(text: str, *, file: str, validator, empty: str) -> Any:
    """Safe-load one YAML document and check it against a JSON Schema validator; every problem
    is raised as a located SpecError."""
    lines = text.splitlines()

    def diag(message: str, mark=None) -> Diagnostic:
        if mark is None:
            return Diagnostic("error", message, file=file)
        line = mark.line + 1
        return Diagnostic("error", message, file=file, line=line, col=mark.column + 1,
                          source_line=lines[mark.line] if mark.line < len(lines) else None)

    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            raise SpecError([diag(empty)])
        problems = list(_structural_problems(node))
        if problems:
            raise SpecError([diag(msg, mark) for msg, mark in problems])
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise SpecError([diag(f"invalid YAML: {message}", mark)]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise SpecError([Diagnostic("error", f"invalid YAML: {exc.reason} ({exc.character!r})", file=file,
                                    line=line)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([diag(f"invalid YAML: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()

    diagnostics = [diag(msg, _node_at(node, path, key_of_last))
                   for msg, path, key_of_last in validate_data(data, validator)]
    if diagnostics:
        raise SpecError(diagnostics)
    return data


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
    if v == "const" and path == ["version"]:
        return (f"version: this omostc reads scene spec version {error.validator_value}, not {error.instance!r}",
                path, False)
    return f"{where}: {error.message}", path, False


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


def _structural_problems(root):
    """Duplicate keys (PyYAML silently keeps the last) and alias bombs, before construction."""
    sizes: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, Any] = {}
                for key, _ in node.value:
                    if isinstance(key, yaml.ScalarNode):
                        if key.value in seen:
                            yield (f"duplicate key {key.value!r} (first at line {seen[key.value].line + 1})",
                                   key.start_mark)
                        seen.setdefault(key.value, key.start_mark)
            continue
        sizes[id(node)] = 1 + sum(sizes.get(id(c), 1) for c in children)
        if sizes[id(node)] > MAX_EXPANDED_NODES:
            yield ("document too large once aliases are expanded", node.start_mark)
            return


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


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
    odd = [ch for ch in value if not ch.isprintable()]
    if odd and set(odd) == {"\n"} and value == value.strip():
        style = "|"
    elif odd or value != value.strip(" "):
        style = '"'
    else:
        style = None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


class _PySpecDumper(yaml.SafeDumper):
    pass


_PySpecDumper.add_representer(str, _str_representer)

_SpecDumper: type[yaml.SafeDumper] | type[yaml.CSafeDumper]
if getattr(yaml, "__with_libyaml__", False):
    class _CSpecDumper(yaml.CSafeDumper):  # libyaml's emitter: same output, about 6x faster
        pass

    _CSpecDumper.add_representer(str, _str_representer)
    _SpecDumper = _CSpecDumper
else:  # pragma: no cover - PyYAML built without libyaml
    _SpecDumper = _PySpecDumper


def dumps_spec(scene: Scene, *, schema_ref: str | None = SCHEMA_ID, dumper=None) -> str:
    """The scene as YAML: block style, keys in spec order, unicode kept, long lines unfolded."""
    body = yaml.dump(scene_to_dict(scene), Dumper=dumper or _SpecDumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=2**30, indent=2)
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
