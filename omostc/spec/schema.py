"""JSON Schema (2020-12) of scene specs, built from the Canvas tables.

``schemas/scene.schema.json`` in the repository is this schema written out (``make schemas``);
a test keeps the two equal. The package never reads that file: it builds the schema here.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from omostc.settings import MAX_FINITE, schema_of
from omostc.spec.model import SPEC_VERSION
from omostc.spec.render import RenderSettings
from omostc.spec.tables import AREAS, COLORS, GRID, LOCATIONS, OFFSETS

SCHEMA_ID = f"urn:omostc:schema:scene:{SPEC_VERSION}"


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _texts(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "description": description}


def _enum(values, description: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values), "description": description}


def build_scene_schema() -> dict[str, Any]:
    color = _enum(COLORS, "One of the 149 HTML web colour names; paints the colour sketch.")
    box = {
        "type": "object",
        "description": "Explicit box on the 90 x 90 grid, top-left origin: columns [x, x+w), rows [y, y+h).",
        "additionalProperties": False,
        "required": ["x", "y", "w", "h"],
        "properties": {
            "x": {"type": "integer", "minimum": 0, "maximum": GRID},
            "y": {"type": "integer", "minimum": 0, "maximum": GRID},
            "w": {"type": "integer", "minimum": 1, "maximum": GRID},
            "h": {"type": "integer", "minimum": 1, "maximum": GRID},
        },
    }
    region = {
        "type": "object",
        "additionalProperties": False,
        "required": ["distance_to_viewer", "description", "detailed_descriptions", "tags",
                     "atmosphere", "style", "quality_meta", "color"],
        "properties": {
            "name": {"type": "string", "pattern": "\\S", "description": "Optional label of the region."},
            "location": _enum(LOCATIONS, "Where the box is centred."),
            "offset": _enum(OFFSETS, "A nudge of the centre by 10 grid cells."),
            "area": _enum(AREAS, "Size and shape of the box."),
            "box": box,
            "distance_to_viewer": {
                "type": "number", "exclusiveMinimum": 0, "maximum": MAX_FINITE,
                "description": "Depth; larger is farther. Regions are layered farthest first.",
            },
            "description": _text("Short sub-prompt: the root of this region's prompts."),
            "detailed_descriptions": _texts("Sub-prompts, one sentence each."),
            "tags": _text("Comma-separated tags."),
            "atmosphere": _text("Mood of the region."),
            "style": _text("Style of the region."),
            "quality_meta": _text("Quality and detail notes."),
            "color": color,
            "feather": {
                "type": "number", "minimum": 0, "maximum": GRID,
                "description": "omostc extension: soft mask edges, ramping over this many grid cells.",
            },
            "weight": {
                "type": "number", "exclusiveMinimum": 0, "maximum": 100,
                "description": "omostc extension: attention weight of this region's prompt (1 = Omost).",
            },
        },
        "oneOf": [
            {"required": ["location", "offset", "area"], "not": {"required": ["box"]}},
            {"required": ["box"], "properties": {"location": False, "offset": False, "area": False}},
        ],
    }
    global_ = {
        "type": "object",
        "additionalProperties": False,
        "required": ["description", "detailed_descriptions", "tags", "color"],
        "properties": {
            "description": _text("What the whole image shows: the root of every prompt."),
            "detailed_descriptions": _texts("Sub-prompts for the whole image."),
            "tags": _text("Comma-separated tags."),
            "color": color,
        },
    }
    render = schema_of(RenderSettings, description="Per-scene render overrides (above the profile, below "
                                                "command-line flags).")
    provenance = {
        "type": "object",
        "additionalProperties": False,
        "description": "Where the scene came from.",
        "properties": {
            "source": {"type": "string", "description": "File the scene was compiled from."},
            "prompt": {"type": "string", "description": "The user's request."},
            "model": {"type": "string", "description": "The model that wrote the canvas."},
            "conversation": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["role", "content"],
                    "properties": {
                        "role": {"type": "string", "enum": ["system", "user", "assistant"]},
                        "content": {"type": "string"},
                    },
                },
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "omostc scene spec",
        "description": "A composed image: one global description and regions layered by depth.",
        "type": "object",
        "additionalProperties": False,
        "required": ["version", "global"],
        "properties": {
            "version": {"const": SPEC_VERSION, "description": "Scene spec format version."},
            "global": global_,
            "regions": {"type": "array", "items": region},
            "render": render,
            "provenance": provenance,
        },
    }


@lru_cache(maxsize=1)
def scene_schema() -> dict[str, Any]:
    return build_scene_schema()


def schema_json() -> str:
    """The schema as the text of ``schemas/scene.schema.json``."""
    return json.dumps(scene_schema(), indent=2, ensure_ascii=False) + "\n"


@lru_cache(maxsize=1)
def scene_validator():
    import jsonschema

    cls = jsonschema.Draft202012Validator
    cls.check_schema(scene_schema())
    return cls(scene_schema())
