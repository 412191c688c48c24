"""The scene spec: a whole canvas as plain data.

These dataclasses are what the compiler produces, what YAML files hold (see ``schemas/``) and
what lowering consumes. ``to_dict``/``from_dict`` give the YAML layout, with keys in a stable,
readable order; ``from_dict`` expects data that already passed the JSON Schema.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from omostc.settings import MAX_FINITE, setting
from omostc.spec.render import HighRes, RenderSettings
from omostc.spec.tables import AREAS, COLORS, GRID, LOCATIONS, OFFSETS

SPEC_VERSION = 1


@dataclass(frozen=True)
class Box:
    """Explicit box on the 90 x 90 grid, top-left origin: columns [x, x+w), rows [y, y+h)."""

    x: int = setting(minimum=0, maximum=GRID, help="Left column.")
    y: int = setting(minimum=0, maximum=GRID, help="Top row.")
    w: int = setting(minimum=1, maximum=GRID, help="Width in columns.")
    h: int = setting(minimum=1, maximum=GRID, help="Height in rows.")


COLOR_HELP = "One of the 149 HTML web colour names; paints the colour sketch."


@dataclass(kw_only=True)
class GlobalDescription:
    """What the whole image shows."""

    description: str = setting(help="What the whole image shows: the root of every prompt.")
    detailed_descriptions: list[str] = setting(help="Sub-prompts for the whole image.")
    tags: str = setting(help="Comma-separated tags.")
    color: str = setting(choices=tuple(COLORS), help=COLOR_HELP)


@dataclass(kw_only=True)
class Region:
    """One part of the image: placed by location, offset and area (or a box), layered by depth.
    The fields are declared once here, in the order specs are written; the schema, the YAML
    layout and the loader are derived from them."""

    name: str | None = setting(None, pattern="\\S", help="Optional label of the region.")
    location: str | None = setting(None, choices=tuple(LOCATIONS), help="Where the box is centred.")
    offset: str | None = setting(None, choices=tuple(OFFSETS), help="A nudge of the centre by 10 grid cells.")
    area: str | None = setting(None, choices=tuple(AREAS), help="Size and shape of the box.")
    box: Box | None = setting(None, help="Explicit box on the 90 x 90 grid.")
    distance_to_viewer: float = setting(exclusive_minimum=0, maximum=MAX_FINITE,
                                        help="Depth; larger is farther. Regions are layered farthest first.")
    description: str = setting(help="Short sub-prompt: the root of this region's prompts.")
    detailed_descriptions: list[str] = setting(help="Sub-prompts, one sentence each.")
    tags: str = setting(help="Comma-separated tags.")
    atmosphere: str = setting(help="Mood of the region.")
    style: str = setting(help="Style of the region.")
    quality_meta: str = setting(help="Quality and detail notes.")
    color: str = setting(choices=tuple(COLORS), help=COLOR_HELP)
    feather: float | None = setting(None, minimum=0, maximum=GRID,
                                    help="omostc extension: soft mask edges, ramping over this many grid cells.")
    weight: float | None = setting(None, exclusive_minimum=0, maximum=100,
                                   help="omostc extension: attention weight of this region's prompt (1 = Omost).")


@dataclass
class Message:
    role: str
    content: str


@dataclass
class Provenance:
    source: str | None = None
    prompt: str | None = None
    model: str | None = None
    conversation: list[Message] | None = None


@dataclass
class Scene:
    global_description: GlobalDescription
    regions: list[Region] = field(default_factory=list)
    render: RenderSettings | None = None
    provenance: Provenance | None = None
    version: int = SPEC_VERSION


# --- geometry -------------------------------------------------------------------------------

def region_rect(region: Region) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) on the 90 x 90 grid, clamped to [0, 90] (OMOST.md section 3)."""
    if region.box is not None:
        b = region.box
        rect = (b.y, b.y + b.h, b.x, b.x + b.w)
    elif region.location is None or region.offset is None or region.area is None:
        raise ValueError("a region needs a box, or a location, an offset and an area")  # the schema says so too
    else:
        cx, cy = LOCATIONS[region.location]
        dx, dy = OFFSETS[region.offset]
        w, h = AREAS[region.area]
        x, y = cx + dx, cy + dy
        rect = (y - h // 2, y + h // 2, x - w // 2, x + w // 2)
    top, bottom, left, right = (max(0, min(GRID, v)) for v in rect)
    return top, bottom, left, right


# --- dict layout ----------------------------------------------------------------------------

def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _fields_to_dict(obj: Any) -> dict[str, Any]:
    """A spec dataclass as YAML holds it: its fields in declaration order, unset ones left out."""
    out: dict[str, Any] = {}
    for name in _field_names(type(obj)):
        value = getattr(obj, name)
        if value is None:
            continue
        if isinstance(value, Box):
            value = {"x": value.x, "y": value.y, "w": value.w, "h": value.h}
        out[name] = list(value) if isinstance(value, list) else value
    return out


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def region_to_dict(r: Region) -> dict[str, Any]:
    return _fields_to_dict(r)


def region_from_dict(data: dict[str, Any]) -> Region:
    values = dict(data)
    if values.get("box") is not None:
        values["box"] = Box(**values["box"])
    values["detailed_descriptions"] = list(values["detailed_descriptions"])
    return Region(**values)


def scene_to_dict(scene: Scene) -> dict[str, Any]:
    g = scene.global_description
    out: dict[str, Any] = {
        "version": scene.version,
        "global": _fields_to_dict(g),
        "regions": [region_to_dict(r) for r in scene.regions],
    }
    if scene.render is not None:
        out["render"] = render_to_dict(scene.render)
    if scene.provenance is not None:
        p = scene.provenance
        prov = _drop_none({"source": p.source, "prompt": p.prompt, "model": p.model})
        if p.conversation is not None:
            prov["conversation"] = [{"role": m.role, "content": m.content} for m in p.conversation]
        out["provenance"] = prov
    return out


def scene_from_dict(data: dict[str, Any]) -> Scene:
    """Build a Scene from a dict that has passed the scene JSON Schema."""
    g = data["global"]
    regions = [region_from_dict(r) for r in data.get("regions", [])]
    render = render_from_dict(data["render"]) if "render" in data else None
    provenance = None
    if "provenance" in data:
        pd = dict(data["provenance"])
        conversation = pd.pop("conversation", None)
        provenance = Provenance(
            **pd,
            conversation=[Message(**m) for m in conversation] if conversation is not None else None,
        )
    return Scene(
        version=data["version"],
        global_description=GlobalDescription(**{**g, "detailed_descriptions": list(g["detailed_descriptions"])}),
        regions=regions, render=render, provenance=provenance,
    )


def render_to_dict(render: RenderSettings) -> dict[str, Any]:
    """The ``render:`` block as YAML holds it: the fields that are set, in declaration order."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(render):
        value = getattr(render, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = _drop_none(dataclasses.asdict(value))
        if value is not None:
            out[f.name] = value
    # the order specs are written in: the size and the seed first
    first: dict[str, Any] = {k: out.pop(k) for k in ("width", "height", "seed") if k in out}
    return {**first, **out}


def render_from_dict(data: dict[str, Any]) -> RenderSettings:
    values = dict(data)
    if "highres" in values:
        values["highres"] = HighRes(**values["highres"])
    return RenderSettings(**values)
