"""Scene spec -> IR: layer order, boxes, colours, prompt paths, colour sketch (OMOST.md sections 3-4);
for the Stable Diffusion family, CLIP token bags too (section 5, ``ir.clip``)."""

from __future__ import annotations

from omostc.ir.clip.bags import clip_bags
from omostc.ir.clip.tokenize import ClipTokenizer
from omostc.ir.model import Layer, SceneIR
from omostc.ir.sketch import color_sketch
from omostc.spec.model import Region, Scene, region_rect
from omostc.spec.tables import COLORS, GRID, REGION_TEXT_FIELDS


def safe_str(text: str) -> str:
    """Omost's normalisation of every prompt piece."""
    return text.strip(",. ") + "."


def layer_order(regions: list[Region]) -> list[int]:
    """Indices of the regions, farthest first; equal depths keep their spec order."""
    return sorted(range(len(regions)), key=lambda i: regions[i].distance_to_viewer, reverse=True)


def _layers(scene: Scene) -> list[Layer]:
    g = scene.global_description
    root = safe_str(g.description)
    layers = [Layer(kind="global", box=(0, GRID, 0, GRID), color=COLORS[g.color], prefixes=[root],
                    suffixes=[safe_str(s) for s in [*g.detailed_descriptions, g.tags]])]
    for i in layer_order(scene.regions):
        r = scene.regions[i]
        layers.append(Layer(
            kind="region", name=r.name, region_index=i, distance_to_viewer=r.distance_to_viewer,
            box=region_rect(r), color=COLORS[r.color],
            feather=float(r.feather or 0.0), weight=float(r.weight if r.weight is not None else 1.0),
            prefixes=[root, safe_str(r.description)],
            suffixes=[safe_str(s) for s in [*r.detailed_descriptions, *(getattr(r, f) for f in REGION_TEXT_FIELDS)]],
        ))
    return layers


def lower(scene: Scene, tokenizer: ClipTokenizer | None = None, second: ClipTokenizer | None = None) -> SceneIR:
    """The neutral IR of a scene; with a CLIP ``tokenizer`` (a model's own, or
    ``default_tokenizer()``, the offline one), also its 77-token bags (``ir.text``), as the Stable
    Diffusion family reads them. ``second``: the tokenizer of a second text encoder reading the
    same bags (a two-encoder model's), whose disagreements on token counts are warned."""
    layers = _layers(scene)
    sketch = color_sketch(layers[0].color, ((layer.box, layer.color) for layer in layers[1:]))
    if tokenizer is None:
        return SceneIR(layers=layers, sketch=sketch)
    text, warnings = clip_bags(layers, tokenizer, second)
    return SceneIR(layers=layers, sketch=sketch, text=text, warnings=warnings)
