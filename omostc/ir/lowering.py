"""Scene spec -> IR: layer order, boxes, colours, prompt paths, token bags, colour sketch
(OMOST.md sections 3-5)."""

from __future__ import annotations

from omostc.ir.clip.bags import BUDGET, bag_text_ids, layer_bags, tokenize_layer
from omostc.ir.clip.tokenize import ClipTokenizer, default_tokenizer
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


def _label(layer: Layer) -> str:
    if layer.kind == "global":
        return "global layer"
    text = layer.name or layer.prefixes[-1]
    return f"region {layer.region_index} ({text[:40] + '...' if len(text) > 40 else text})"


def _tokenize(layer: Layer, tokenizer: ClipTokenizer, warnings: list[str]) -> None:
    tokens = tokenize_layer(layer.prefixes, layer.suffixes, tokenizer)
    layer.prefix_ids, layer.suffix_ids = tokens.prefix_ids, tokens.suffix_ids
    layer.bags = layer_bags(tokens)
    for i in tokens.cropped_suffixes:
        warnings.append(f"{_label(layer)}: sub-prompt {i} is longer than {BUDGET} tokens; cropped to {BUDGET}")
    if len(tokens.prefix_ids) >= BUDGET and layer.suffixes:
        warnings.append(f"{_label(layer)}: its prefix alone is {len(tokens.prefix_ids)} tokens; "
                        "no sub-prompt fits beside it, so all of them are cut")
        return
    for j, bag in enumerate(layer.bags):
        n = len(bag_text_ids(tokens, bag))
        if n > BUDGET:
            warnings.append(f"{_label(layer)}: chunk {j} is {n} tokens; the last {n - BUDGET} are cut")


def lower(scene: Scene, tokenizer: ClipTokenizer | None = None) -> SceneIR:
    """The IR of a scene. Token counts and bags come from ``tokenizer`` (a model's own), else
    from the offline CLIP tokenizer."""
    tokenizer = tokenizer or default_tokenizer()
    layers = _layers(scene)
    tokenizer.encode([t for layer in layers for t in (*layer.prefixes, *layer.suffixes)])  # one batch
    warnings: list[str] = []
    for layer in layers:
        _tokenize(layer, tokenizer, warnings)
    sketch = color_sketch(layers[0].color, ((layer.box, layer.color) for layer in layers[1:]))
    return SceneIR(layers=layers, sketch=sketch, tokenizer=tokenizer.name, warnings=warnings)
