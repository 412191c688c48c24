"""The IR: what a renderer executes, as plain, backend-neutral data.

Lowering (``omostc.lower``) builds it from a scene spec; ``to_dict`` is the JSON that
``omostc lower --json`` prints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Rect = tuple[int, int, int, int]  # (top, bottom, left, right) on the 90 x 90 grid


@dataclass
class Layer:
    """One condition: a box on the grid, a colour, and a path in the prompt prefix tree."""

    kind: Literal["global", "region"]
    box: Rect
    color: tuple[int, int, int]
    prefixes: list[str]
    suffixes: list[str]
    name: str | None = None
    distance_to_viewer: float | None = None
    region_index: int | None = None  # position of the region in the spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "region_index": self.region_index,
            "distance_to_viewer": self.distance_to_viewer,
            "box": list(self.box),
            "color": list(self.color),
            "prefixes": list(self.prefixes),
            "suffixes": list(self.suffixes),
        }


@dataclass
class SceneIR:
    layers: list[Layer] = field(default_factory=list)

    @property
    def global_layer(self) -> Layer:
        return self.layers[0]

    @property
    def region_layers(self) -> list[Layer]:
        return self.layers[1:]

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [layer.to_dict() for layer in self.layers]}


_NUMBER_ARRAY = re.compile(r"\[\s+([-+0-9.eE,\s]+?)\s+\]")


def to_json(data: dict[str, Any]) -> str:
    """Indented JSON with arrays of numbers kept on one line (boxes, colours, token counts)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _NUMBER_ARRAY.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
