"""JSON Schema (2020-12) of scene specs, built from the Canvas tables.

``schemas/scene.schema.json`` in the repository is this schema written out (``make schemas``);
a test keeps the two equal. The package never reads that file: it builds the schema here.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from omostc.settings import schema_of
from omostc.spec.model import SPEC_VERSION, GlobalDescription, Region
from omostc.spec.render import RenderSettings

SCHEMA_ID = f"urn:omostc:schema:scene:{SPEC_VERSION}"


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _texts(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "description": description}


def _enum(values, description: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values), "description": description}


def build_scene_schema() -> dict[str, Any]:
    region = {
        **schema_of(Region),
        "oneOf": [  # placed by Omost's vocabulary, or by an explicit box
            {"required": ["location", "offset", "area"], "not": {"required": ["box"]}},
            {"required": ["box"], "properties": {"location": False, "offset": False, "area": False}},
        ],
    }
    global_ = schema_of(GlobalDescription)
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
