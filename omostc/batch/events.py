"""The JSON log of ``omostc render --log json`` (one object per line on stdout, each with an
``event``) and the JSON Schemas of its events and of manifest rows, generated from the code
(``make schemas`` writes them to ``schemas/``; a test checks they are current)."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from omostc.batch.manifest import STATUSES, ItemResult, Removed
from omostc.diagnostics import Diagnostic

ROW_FIELDS = {
    "name": "The output folder: the input's file name without its suffix (OUT/<name>/<seed>.png).",
    "source": "The input: a spec or Canvas-code file, '-' for standard input, or a PNG given to --from-png.",
    "seed": "The item's seed; null for an input that failed as a whole (it did not load, or its settings "
            "break a rule), which then has this one row.",
    "status": "rendered: rendered and written now; skipped: OUT already held the PNG with this item's key "
              "(incremental); failed: see error.",
    "output": "The PNG's path (as OUT was given: relative to the folder the batch ran in, or absolute); "
              "null for an input that failed as a whole.",
    "spec_hash": "Hash of what in the scene decides its pictures; null for an input that failed as a whole.",
    "settings_hash": "Hash of the resolved settings and profile that decide the pixels; null for an input "
                     "that failed as a whole.",
    "seconds": "Seconds spent rendering the item (0 when skipped or failed as a whole).",
    "error": "Why it failed, in one line (a spec's first error with its line and column); null otherwise.",
    "finished": "When the row was written: seconds since the Unix epoch (UTC).",
    "warnings": "What lowering the scene for the backend cut or changed (tokens past a limit, ...).",
}

_TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
    "list[str]": {"type": "array", "items": {"type": "string"}}}


def _type(annotation: str) -> dict[str, Any]:
    """A field's JSON type from its annotation (``str | None``: a string or null)."""
    names = [part.strip() for part in annotation.split("|")]
    kinds = [_TYPES[n] for n in names if n != "None"]
    if len(kinds) != 1:
        raise ValueError(f"no JSON type for {annotation!r}")
    prop = dict(kinds[0])
    if "None" in names:
        prop["type"] = [prop["type"], "null"]
    return prop


def row_schema() -> dict[str, Any]:
    """A manifest row (``ItemResult``), field by field."""
    props: dict[str, Any] = {}
    for f in fields(ItemResult):
        prop = _type(str(f.type))
        if f.name == "status":
            prop = {"enum": list(STATUSES)}
        props[f.name] = {**prop, "description": ROW_FIELDS[f.name]}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "urn:omostc:schema:manifest-row:1",
            "title": "omostc manifest row (one line of OUT/manifest.jsonl)", "type": "object",
            "additionalProperties": False, "required": [f.name for f in fields(ItemResult)], "properties": props}


def _event(name: str, description: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "description": description, "additionalProperties": False,
            "required": ["event", *required], "properties": {"event": {"const": name}, **props}}


_NULL_STRING = {"type": ["string", "null"]}
_NULL_INT = {"type": ["integer", "null"], "description": "1-based."}


def log_schema() -> dict[str, Any]:
    """Every line ``omostc render --log json`` writes on stdout."""
    row = row_schema()
    item = _event("item", "One manifest row: an item rendered, skipped or failed, or an input that failed "
                  "as a whole (seed null).", row["properties"], row["required"])
    diagnostic = _event("diagnostic", "A located error or warning about an input, a profile or the command.", {
        "severity": {"enum": ["error", "warning"]}, "message": {"type": "string"}, "file": _NULL_STRING,
        "line": _NULL_INT, "column": _NULL_INT, "end_column": _NULL_INT,
        "excerpt": {**_NULL_STRING, "description": "The offending line of the file as it stands."}},
        ["severity", "message", "file", "line", "column", "end_column", "excerpt"])
    waiting = _event("waiting", "OUT is locked by another batch: this one waits until it ends.",
                     {"message": {"type": "string"}}, ["message"])
    pruned = _event("pruned", "--prune removed (with dry_run: would remove) a row not produced by the current "
                    "inputs, and the PNG it recorded (output; null when only the row went).", {
                        "name": {"type": "string"}, "seed": {"type": ["integer", "null"]}, "source": _NULL_STRING,
                        "output": _NULL_STRING, "dry_run": {"type": "boolean"}},
                    ["name", "seed", "source", "output", "dry_run"])
    count = {"type": "integer", "minimum": 0}
    summary = _event("summary", "The last line: what the batch did (with dry_run, pruned counts what --prune "
                     "would remove).", {
        "rendered": count, "skipped": count, "failed": count, "pruned": count, "dry_run": {"type": "boolean"},
        "profile": {"type": "string"}, "manifest": {"type": "string"}},
        ["rendered", "skipped", "failed", "pruned", "dry_run", "profile", "manifest"])
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "urn:omostc:schema:log-event:1",
            "title": "omostc render --log json: one event per line", "type": "object",
            "oneOf": [item, diagnostic, waiting, pruned, summary]}


def _json(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def row_schema_json() -> str:
    return _json(row_schema())


def log_schema_json() -> str:
    return _json(log_schema())


def item_event(result: ItemResult) -> dict[str, Any]:
    return {"event": "item", **result.row()}


def diagnostic_event(d: Diagnostic) -> dict[str, Any]:
    return {"event": "diagnostic", "severity": d.severity, "message": d.message, "file": d.file, "line": d.line,
            "column": d.col, "end_column": d.end_col,
            "excerpt": d.source_line.rstrip("\r\n") if d.source_line is not None else None}


def pruned_event(removed: Removed, dry_run: bool) -> dict[str, Any]:
    return {"event": "pruned", "name": removed.name, "seed": removed.seed, "source": removed.source,
            "output": removed.output, "dry_run": dry_run}


def line(event: dict[str, Any]) -> str:
    """One event as one line of UTF-8 JSON (a lone surrogate from a file name as its escape)."""
    return json.dumps(event, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")
