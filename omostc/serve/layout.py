"""The layout view's geometry: regions as grid rectangles, and a dragged box snapped back to
Omost's vocabulary (location + offset + area) when it fits one.

Snapping: each (location, offset, area) gives a rectangle (centre + offset, the area's size,
clamped to the 90 x 90 grid, as rendering places it). A box snaps to the closest such rectangle
when each of its four edges is within ``SNAP_TOLERANCE`` grid cells of that rectangle's; else it
is kept as a free ``box``. 3 cells is 1/30 of the image side (34 px of 1024): a drag lands on a
vocabulary box without pixel precision, yet a box must be visibly close to one: distinct
vocabulary boxes differ by 5 cells or more on some edge (two areas: 10 cells in width or height,
5 a side; two offsets: 10), so the tolerance stays under that, and of two candidates within it
the closer wins (least summed edge distance, then "no offset", then the tables' order).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from typing import Any

from omostc.spec.model import Region, Scene, region_rect
from omostc.spec.schema import scene_schema
from omostc.spec.tables import AREAS, COLORS, DEFAULT_HEIGHT, DEFAULT_WIDTH, GRID, LOCATIONS, OFFSETS

SNAP_TOLERANCE = 3  # grid cells, per edge


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    def edges(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.x + self.w, self.y + self.h

    def to_dict(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}


def vocabulary_rect(location: str, offset: str, area: str) -> Rect:
    top, bottom, left, right = region_rect(Region(location=location, offset=offset, area=area,
                                                  distance_to_viewer=1.0, description="", detailed_descriptions=[],
                                                  tags="", atmosphere="", style="", quality_meta="", color="red"))
    return Rect(left, top, right - left, bottom - top)


@lru_cache(maxsize=1)
def _candidates() -> tuple[tuple[str, str, str, Rect], ...]:
    # "no offset" first in OFFSETS: of equally close candidates, the plainest wins
    return tuple((loc, off, area, vocabulary_rect(loc, off, area))
                 for off, loc, area in product(OFFSETS, LOCATIONS, AREAS))


def free_box(x: float, y: float, w: float, h: float) -> Rect:
    """A box rounded to whole cells and kept inside the grid, at least one cell wide and high."""
    left = min(max(round(x), 0), GRID - 1)
    top = min(max(round(y), 0), GRID - 1)
    right = min(max(round(x + w), left + 1), GRID)
    bottom = min(max(round(y + h), top + 1), GRID)
    return Rect(left, top, right - left, bottom - top)


def snap(x: float, y: float, w: float, h: float, tolerance: int = SNAP_TOLERANCE) -> dict[str, Any]:
    """``{snapped: True, location, offset, area, box}`` for a box that fits the vocabulary, else
    ``{snapped: False, box}``. Coordinates in grid cells."""
    given = (x, y, x + w, y + h)
    best: tuple[float, str, str, str, Rect] | None = None
    for loc, off, area, rect in _candidates():
        gaps = [abs(a - b) for a, b in zip(given, rect.edges())]
        if max(gaps) <= tolerance and (best is None or sum(gaps) < best[0]):
            best = (sum(gaps), loc, off, area, rect)
    if best is None:
        return {"snapped": False, "box": free_box(x, y, w, h).to_dict()}
    _, loc, off, area, rect = best
    return {"snapped": True, "location": loc, "offset": off, "area": area, "box": rect.to_dict()}


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def layout_of(scene: Scene) -> dict[str, Any]:
    """What the page draws: each region's clamped rectangle, colour and drawing order."""
    render = scene.render
    width = render.width if render and render.width else DEFAULT_WIDTH
    height = render.height if render and render.height else DEFAULT_HEIGHT
    order = sorted(range(len(scene.regions)), key=lambda i: -scene.regions[i].distance_to_viewer)
    rank = {index: n for n, index in enumerate(order)}  # farthest first, as rendering layers them
    regions = []
    for i, region in enumerate(scene.regions):
        top, bottom, left, right = region_rect(region)
        regions.append({"index": i, "x": left, "y": top, "w": right - left, "h": bottom - top,
                        "color": _hex(COLORS[region.color]), "color_name": region.color,
                        "label": region.name or region.description, "distance_to_viewer": region.distance_to_viewer,
                        "order": rank[i], "snapped": region.box is None})
    g = scene.global_description
    return {"width": width, "height": height, "grid": GRID, "regions": regions,
            "global": {"color": _hex(COLORS[g.color]), "color_name": g.color}}


def _fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    return [{"name": name, "required": name in required, "help": prop.get("description", ""),
             "choices": prop.get("enum"), "schema": prop} for name, prop in schema["properties"].items()]


def vocabulary() -> dict[str, Any]:
    """The allowed values of every region field, and the geometry of the vocabulary."""
    schema = scene_schema()["properties"]
    return {"grid": GRID, "snap_tolerance": SNAP_TOLERANCE,
            "default_width": DEFAULT_WIDTH, "default_height": DEFAULT_HEIGHT,
            "locations": {k: list(v) for k, v in LOCATIONS.items()},
            "offsets": {k: list(v) for k, v in OFFSETS.items()},
            "areas": {k: list(v) for k, v in AREAS.items()},
            "colors": {k: _hex(v) for k, v in COLORS.items()},
            "region_fields": _fields(schema["regions"]["items"]),
            "global_fields": _fields(schema["global"])}
