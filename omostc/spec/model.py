"""The scene spec: a whole canvas as plain data.

These dataclasses are what the compiler produces, what YAML files hold (see ``schemas/``) and
what lowering consumes. ``to_dict``/``from_dict`` give the YAML layout, with keys in a stable,
readable order; ``from_dict`` expects data that already passed the JSON Schema.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from omostc.spec.render import HighRes, RenderSettings
from omostc.spec.tables import AREAS, GRID, LOCATIONS, OFFSETS

SPEC_VERSION = 1


@dataclass(frozen=True)
class Box:
    """An explicit box on the 90 x 90 grid, top-left origin: columns [x, x+w), rows [y, y+h)."""

    x: int
    y: int
    w: int
    h: int


@dataclass
class GlobalDescription:
    description: str
    detailed_descriptions: list[str]
    tags: str
    color: str


@dataclass
class Region:
    distance_to_viewer: float
    description: str
    detailed_descriptions: list[str]
    tags: str
    atmosphere: str
    style: str
    quality_meta: str
    color: str
    location: str | None = None
    offset: str | None = None
    area: str | None = None
    box: Box | None = None
    name: str | None = None
    feather: float | None = None  # soft mask edge, in grid cells (None: hard edges, as Omost)
    weight: float | None = None  # attention weight of the region's tokens (None: 1, as Omost)


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


def region_to_dict(r: Region) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.name is not None:
        out["name"] = r.name
    if r.box is not None:
        out["box"] = {"x": r.box.x, "y": r.box.y, "w": r.box.w, "h": r.box.h}
    else:
        out.update(location=r.location, offset=r.offset, area=r.area)
    out.update(
        distance_to_viewer=r.distance_to_viewer,
        description=r.description,
        detailed_descriptions=list(r.detailed_descriptions),
        tags=r.tags,
        atmosphere=r.atmosphere,
        style=r.style,
        quality_meta=r.quality_meta,
        color=r.color,
    )
    if r.feather is not None:
        out["feather"] = r.feather
    if r.weight is not None:
        out["weight"] = r.weight
    return out


def scene_to_dict(scene: Scene) -> dict[str, Any]:
    g = scene.global_description
    out: dict[str, Any] = {
        "version": scene.version,
        "global": {
            "description": g.description,
            "detailed_descriptions": list(g.detailed_descriptions),
            "tags": g.tags,
            "color": g.color,
        },
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
    regions = []
    for r in data.get("regions", []):
        box = r.get("box")
        regions.append(Region(
            name=r.get("name"),
            location=r.get("location"), offset=r.get("offset"), area=r.get("area"),
            box=Box(**box) if box is not None else None,
            distance_to_viewer=r["distance_to_viewer"],
            description=r["description"],
            detailed_descriptions=list(r["detailed_descriptions"]),
            tags=r["tags"], atmosphere=r["atmosphere"], style=r["style"],
            quality_meta=r["quality_meta"], color=r["color"],
            feather=r.get("feather"), weight=r.get("weight"),
        ))
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
        global_description=GlobalDescription(
            description=g["description"], detailed_descriptions=list(g["detailed_descriptions"]),
            tags=g["tags"], color=g["color"],
        ),
        regions=regions, render=render, provenance=provenance,
    )


def render_to_dict(render: RenderSettings) -> dict[str, Any]:
    """The ``render:`` block as YAML holds it: the fields that are set, in declaration order."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(render):
        value = getattr(render, f.name)
        if dataclasses.is_dataclass(value):
            value = _drop_none(dataclasses.asdict(value))
        if value is not None:
            out[f.name] = value
    first = {k: out.pop(k) for k in ("width", "height", "seed") if k in out}  # the order specs are written in
    return {**first, **out}


def render_from_dict(data: dict[str, Any]) -> RenderSettings:
    values = dict(data)
    if "highres" in values:
        values["highres"] = HighRes(**values["highres"])
    return RenderSettings(**values)
