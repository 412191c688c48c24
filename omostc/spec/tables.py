"""The fixed vocabulary of Omost's Canvas API (OMOST.md sections 1-3).

Every other module (parser, schema, decompiler, lowering, later the grammar) takes its
enumerations from here, so they cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from types import MappingProxyType

GRID = 90
"""Side of the square layout grid every box lives on."""

LOCATIONS: Mapping[str, tuple[int, int]] = MappingProxyType({  # centre (x, y)
    "in the center": (45, 45),
    "on the left": (15, 45),
    "on the right": (75, 45),
    "on the top": (45, 15),
    "on the bottom": (45, 75),
    "on the top-left": (15, 15),
    "on the top-right": (75, 15),
    "on the bottom-left": (15, 75),
    "on the bottom-right": (75, 75),
})

OFFSETS: Mapping[str, tuple[int, int]] = MappingProxyType({  # delta (x, y)
    "no offset": (0, 0),
    "slightly to the left": (-10, 0),
    "slightly to the right": (10, 0),
    "slightly to the upper": (0, -10),
    "slightly to the lower": (0, 10),
    "slightly to the upper-left": (-10, -10),
    "slightly to the upper-right": (10, -10),
    "slightly to the lower-left": (-10, 10),
    "slightly to the lower-right": (10, 10),
})

AREAS: Mapping[str, tuple[int, int]] = MappingProxyType({  # size (w, h)
    "a small square area": (50, 50),
    "a small vertical area": (40, 60),
    "a small horizontal area": (60, 40),
    "a medium-sized square area": (60, 60),
    "a medium-sized vertical area": (50, 80),
    "a medium-sized horizontal area": (80, 50),
    "a large square area": (70, 70),
    "a large vertical area": (60, 90),
    "a large horizontal area": (90, 60),
})


def _load_colors() -> Mapping[str, tuple[int, int, int]]:
    raw = json.loads(resources.files("omostc.data").joinpath("html_web_colors.json").read_text("utf-8"))
    return MappingProxyType({name: tuple(rgb) for name, rgb in raw.items()})


COLORS: Mapping[str, tuple[int, int, int]] = _load_colors()
"""The 149 ``HTML_web_color_name`` values and their RGB."""

# Parameter order of the two Canvas methods, as in the system prompt the models were trained on.
GLOBAL_PARAMS: tuple[str, ...] = ("description", "detailed_descriptions", "tags", "HTML_web_color_name")
REGION_PARAMS: tuple[str, ...] = (
    "location", "offset", "area", "distance_to_viewer", "description", "detailed_descriptions",
    "tags", "atmosphere", "style", "quality_meta", "HTML_web_color_name",
)
REGION_TEXT_FIELDS: tuple[str, ...] = ("tags", "atmosphere", "style", "quality_meta")
"""Region fields that become suffixes after the detailed descriptions, in this order."""


DEFAULT_WIDTH, DEFAULT_HEIGHT = 896, 1152  # Omost's app defaults (OMOST.md section 8)


@lru_cache(maxsize=1)
def system_prompt() -> str:
    """The system prompt the Omost models were trained with, byte for byte."""
    return resources.files("omostc.data").joinpath("system_prompt.txt").read_bytes().decode("utf-8")
