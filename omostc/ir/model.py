"""The IR: what a renderer executes, as plain, backend-neutral data.

Lowering (``omostc.lower``) builds it from a scene spec. Everything a backend needs is here:
layers in order with boxes, colours, prompt paths, token ids and bags; masks at any resolution;
the colour sketch and its blurred, image-sized form. ``to_dict`` is the JSON that
``omostc lower --json`` prints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from omostc.ir.clip.bags import LayerTokens, bag_text_ids, chunk
from omostc.ir.masks import box_mask, feathered_box_mask
from omostc.ir.sketch import blurred_sketch

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
    feather: float = 0.0  # soft edge width in grid cells; 0 is Omost's hard box
    weight: float = 1.0  # attention weight of this layer's tokens; 1 is Omost's
    prefix_ids: list[int] = field(default_factory=list, repr=False)  # all prefixes, joined
    suffix_ids: list[list[int]] = field(default_factory=list, repr=False)  # each cropped to 75
    bags: list[list[int]] = field(default_factory=list)  # suffix indices per 77-token chunk

    def mask(self, height: int, width: int) -> np.ndarray:
        """(height, width) mask: boolean for hard boxes, float32 in [0, 1] when feathered."""
        if self.feather > 0:
            return feathered_box_mask(self.box, self.feather, height, width)
        return box_mask(self.box, height, width)

    def chunks(self, bos: int, eos: int, pad: int) -> list[list[int]]:
        """The 77-token id lists of this layer, one per bag, with a tokenizer's special ids."""
        tokens = LayerTokens(self.prefix_ids, self.suffix_ids, [])
        return [chunk(bag_text_ids(tokens, bag), bos, eos, pad) for bag in self.bags]

    def to_dict(self, *, ids: bool = False) -> dict[str, Any]:
        out = {
            "kind": self.kind,
            "name": self.name,
            "region_index": self.region_index,
            "distance_to_viewer": self.distance_to_viewer,
            "box": list(self.box),
            "color": list(self.color),
            "feather": self.feather,
            "weight": self.weight,
            "prefixes": list(self.prefixes),
            "suffixes": list(self.suffixes),
            "tokens": {"prefix": len(self.prefix_ids), "suffixes": [len(s) for s in self.suffix_ids]},
            "bags": [list(b) for b in self.bags],
        }
        if ids:
            out["ids"] = {"prefix": list(self.prefix_ids), "suffixes": [list(s) for s in self.suffix_ids]}
        return out


@dataclass
class SceneIR:
    layers: list[Layer]
    sketch: np.ndarray  # (90, 90, 3) uint8
    tokenizer: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def region_layers(self) -> list[Layer]:
        return self.layers[1:]

    def masks(self, height: int, width: int) -> np.ndarray:
        """(layers, height, width) float32 masks, global layer first."""
        return np.stack([layer.mask(height, width).astype(np.float32) for layer in self.layers])

    def initial_image(self, height: int, width: int) -> np.ndarray:
        """(3, height, width) float32 in [-1, 1]: the blurred sketch a renderer VAE-encodes."""
        return blurred_sketch(self.sketch, height, width)

    def to_dict(self, *, ids: bool = False) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "layers": [layer.to_dict(ids=ids) for layer in self.layers]}


_NUMBER_ARRAY = re.compile(r"\[\s+([-+0-9.eE,\s]+?)\s+\]")


def to_json(data: dict[str, Any]) -> str:
    """Indented JSON with arrays of numbers kept on one line (boxes, colours, token counts)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _NUMBER_ARRAY.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
