"""Scene spec -> IR: layer order, boxes, colours and prompt paths (OMOST.md sections 3-4)."""

from __future__ import annotations

from .ir import Layer, SceneIR
from .spec import Region, Scene, region_rect
from .tables import COLORS, GRID, REGION_TEXT_FIELDS


def safe_str(text: str) -> str:
    """Omost's normalisation of every prompt piece."""
    return text.strip(",. ") + "."


def layer_order(regions: list[Region]) -> list[int]:
    """Indices of the regions, farthest first; equal depths keep their spec order."""
    return sorted(range(len(regions)), key=lambda i: regions[i].distance_to_viewer, reverse=True)


def lower(scene: Scene) -> SceneIR:
    g = scene.global_description
    root = safe_str(g.description)
    layers = [Layer(
        kind="global",
        box=(0, GRID, 0, GRID),
        color=COLORS[g.color],
        prefixes=[root],
        suffixes=[safe_str(s) for s in [*g.detailed_descriptions, g.tags]],
    )]
    for i in layer_order(scene.regions):
        r = scene.regions[i]
        layers.append(Layer(
            kind="region",
            name=r.name,
            region_index=i,
            distance_to_viewer=r.distance_to_viewer,
            box=region_rect(r),
            color=COLORS[r.color],
            prefixes=[root, safe_str(r.description)],
            suffixes=[safe_str(s) for s in [*r.detailed_descriptions, *(getattr(r, f) for f in REGION_TEXT_FIELDS)]],
        ))
    return SceneIR(layers=layers)
