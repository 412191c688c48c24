"""The spec view's operations as plain data: validate YAML text, compile Canvas code, turn an
edited scene back into the canonical YAML. Each answers ``{ok, yaml, scene, layout, diagnostics}``,
the diagnostics located as the command line prints them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omostc.api import check_scene, compile_text
from omostc.diagnostics import Diagnostic, OmostcError
from omostc.serve.layout import layout_of
from omostc.spec.model import Scene, scene_from_dict, scene_to_dict
from omostc.spec.schema import scene_schema
from omostc.spec.yamlio import dumps_spec, integral_floats_to_int, loads_spec, schema_ref_for, validate_data

_SUGGESTION = re.compile(r"did you mean '((?:[^'\\]|\\.)*)'\?")


def diagnostic_json(d: Diagnostic) -> dict[str, Any]:
    found = _SUGGESTION.search(d.message)
    return {"severity": d.severity, "message": d.message, "file": d.file, "line": d.line, "column": d.col,
            "end_column": d.end_col, "excerpt": d.source_line, "suggestion": found.group(1) if found else None}


def diagnostics_json(diagnostics) -> list[dict[str, Any]]:
    return [diagnostic_json(d) for d in diagnostics]


def _view(scene: Scene | None, yaml_text: str | None, diagnostics, **extra: Any) -> dict[str, Any]:
    return {"ok": scene is not None, "yaml": yaml_text, "scene": scene_to_dict(scene) if scene else None,
            "layout": layout_of(scene) if scene else None, "diagnostics": diagnostics_json(diagnostics), **extra}


def canonical_yaml(scene: Scene, target: Path | None) -> str:
    """The bytes ``omostc compile -o TARGET`` writes for this scene."""
    return dumps_spec(scene, schema_ref=schema_ref_for(target))


def validate_yaml(text: str, name: str = "<spec>") -> dict[str, Any]:
    try:
        scene = loads_spec(text, file=name)
    except OmostcError as exc:
        return _view(None, text, exc.diagnostics)
    return _view(scene, text, [])


def compile_code(code: str, target: Path | None = None) -> dict[str, Any]:
    try:
        result = compile_text(code, file="<code>")
    except OmostcError as exc:
        return _view(None, None, exc.diagnostics)
    return _view(result.scene, canonical_yaml(result.scene, target), result.warnings)


def numbers_as_floats(data: Any, schema: dict[str, Any]) -> Any:
    """A copy of ``data`` with whole numbers made floats where the schema asks for a number (not an
    integer): JSON in the browser writes 5.0 as 5, and the YAML must still say 5.0, as compiling writes it."""
    if isinstance(data, dict):
        props = schema.get("properties", {})
        return {k: numbers_as_floats(v, props.get(k, {})) for k, v in data.items()}
    if isinstance(data, list):
        items = schema.get("items", {})
        return [numbers_as_floats(v, items if isinstance(items, dict) else {}) for v in data]
    if schema.get("type") == "number" and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    return data


def scene_from_data(data: Any) -> tuple[Scene | None, list[Diagnostic]]:
    """A scene dict from the page, checked against the schema as a spec file is."""
    if not isinstance(data, dict):
        return None, [Diagnostic("error", "the scene must be a mapping of keys to values", file="<scene>")]
    schema = scene_schema()
    problems = validate_data(data)
    if problems:
        return None, [Diagnostic("error", message, file="<scene>") for message, _, _ in problems]
    data = numbers_as_floats(data, schema)
    integral_floats_to_int(data, schema)
    scene = scene_from_dict(data)
    try:
        check_scene(scene)
    except OmostcError as exc:
        return None, exc.diagnostics
    return scene, []


def scene_to_yaml(data: Any, target: Path | None = None) -> dict[str, Any]:
    scene, problems = scene_from_data(data)
    if scene is None:
        return _view(None, None, problems)
    return _view(scene, canonical_yaml(scene, target), [])


def layout_json(data: Any) -> dict[str, Any]:
    scene, problems = scene_from_data(data)
    return {"layout": layout_of(scene) if scene else None, "diagnostics": diagnostics_json(problems)}
