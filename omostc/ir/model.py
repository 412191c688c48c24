"""The IR: what a renderer executes, as plain, backend-neutral data.

Lowering (``omostc.lower``) builds it from a scene spec: layers in order with boxes, colours and
prompt paths (prefixes and sub-prompts); masks at any resolution; the colour sketch and its
blurred, image-sized form. How a model family encodes the prompts (CLIP's 77-token bags for the
Stable Diffusion family, ``ir.clip``) is a ``TextPlan`` kept beside the layers, made by the
backend that needs it. ``to_dict`` is the JSON that ``omostc lower --json`` prints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from omostc.diagnostics import Diagnostic
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

    def mask(self, height: int, width: int) -> np.ndarray:
        """(height, width) mask: boolean for hard boxes, float32 in [0, 1] when feathered."""
        if self.feather > 0:
            return feathered_box_mask(self.box, self.feather, height, width)
        return box_mask(self.box, height, width)

    def label(self) -> str:
        """How messages name this layer."""
        if self.kind == "global":
            return "global layer"
        text = self.name or self.prefixes[-1]
        return f"region {self.region_index} ({text[:40] + '...' if len(text) > 40 else text})"

    def to_dict(self) -> dict[str, Any]:
        return {
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
        }


class TextPlan(Protocol):
    """A model family's encoding of the layers' prompts, kept beside the neutral IR."""

    tokenizer: str  # which tokenizer made it (a backend refuses a plan made by another)

    def layer_dict(self, index: int, *, ids: bool = False) -> dict[str, Any]:
        """What ``omostc lower --json`` shows of layer ``index`` (token counts, bags, ...)."""
        ...


@dataclass
class SceneIR:
    layers: list[Layer]
    sketch: np.ndarray  # (90, 90, 3) uint8
    text: TextPlan | None = None  # the prompts as a backend family encodes them
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def tokenizer(self) -> str:
        return self.text.tokenizer if self.text is not None else ""

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
        text = self.text
        return {"tokenizer": self.tokenizer,
                "layers": [{**layer.to_dict(), **(text.layer_dict(i, ids=ids) if text is not None else {})}
                           for i, layer in enumerate(self.layers)]}


_NUMBER_ARRAY = re.compile(r"\[\s+([-+0-9.eE,\s]+?)\s+\]")


def to_json(data: dict[str, Any]) -> str:
    """Indented JSON with arrays of numbers kept on one line (boxes, colours, token counts)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _NUMBER_ARRAY.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
