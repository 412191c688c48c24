"""Scene spec -> Canvas code, in the exact style the Omost models write.

The output can be fed back to the LLM as its previous assistant turn, and compiles back to the
same scene: ``compile(decompile(scene)) == scene`` for every valid scene.
"""

from __future__ import annotations

from omostc.diagnostics import SpecError
from omostc.spec.model import GlobalDescription, Region, Scene

INDENT = "    "


def _literal(value: str) -> str:
    # repr() is the models' own quoting: single quotes unless the text holds one and no double.
    return repr(value)


def _number(value: int | float) -> str:
    return repr(value)


def _strings(values: list[str]) -> list[str]:
    if not values:
        return ["[],"]
    return ["["] + [f"{INDENT}{_literal(v)}," for v in values] + ["],"]


def _call(target: str, args: list[tuple[str, str | list[str]]]) -> list[str]:
    lines = [f"{target}("]
    for key, rendered in args:
        if isinstance(rendered, list):  # a multi-line list
            lines.append(f"{INDENT}{key}={rendered[0]}")
            lines.extend(INDENT + line for line in rendered[1:])
        else:
            lines.append(f"{INDENT}{key}={rendered},")
    lines.append(")")
    return lines


def _comment(description: str) -> str:
    """'A mighty dragon.' -> '# Add a mighty dragon.', as the models comment each region."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in description).split())
    first, _, rest = text.partition(" ")
    if first in ("A", "An", "The"):
        text = first.lower() + (" " + rest if rest else "")
    if not text.endswith("."):
        text += "."
    return f"# Add {text}"


def _global_lines(g: GlobalDescription) -> list[str]:
    return _call("canvas.set_global_description", [
        ("description", _literal(g.description)),
        ("detailed_descriptions", _strings(g.detailed_descriptions)),
        ("tags", _literal(g.tags)),
        ("HTML_web_color_name", _literal(g.color)),
    ])


def _region_lines(r: Region) -> list[str]:
    args: list[tuple[str, str | list[str]]] = []
    if r.name is not None:
        args.append(("name", _literal(r.name)))
    if r.box is not None:
        args.append(("bbox", f"[{r.box.x}, {r.box.y}, {r.box.w}, {r.box.h}]"))
    elif r.location is not None and r.offset is not None and r.area is not None:
        args += [("location", _literal(r.location)), ("offset", _literal(r.offset)), ("area", _literal(r.area))]
    else:  # a valid scene never has this: Canvas code cannot place such a region
        raise SpecError(f"region {r.description!r} is placed by neither a box nor location, offset and area")
    args += [
        ("distance_to_viewer", _number(r.distance_to_viewer)),
        ("description", _literal(r.description)),
        ("detailed_descriptions", _strings(r.detailed_descriptions)),
        ("tags", _literal(r.tags)),
        ("atmosphere", _literal(r.atmosphere)),
        ("style", _literal(r.style)),
        ("quality_meta", _literal(r.quality_meta)),
        ("HTML_web_color_name", _literal(r.color)),
    ]
    if r.feather is not None:  # omostc extensions, after Omost's own arguments
        args.append(("feather", _number(r.feather)))
    if r.weight is not None:
        args.append(("weight", _number(r.weight)))
    return _call("canvas.add_local_description", args)


def decompile(scene: Scene, *, fence: bool = False) -> str:
    """Canvas code for a scene; with ``fence`` wrapped as the models answer (```python ... ```)."""
    lines = ["# Initialize the canvas", "canvas = Canvas()", "",
             "# Set a global description for the canvas", *_global_lines(scene.global_description)]
    for region in scene.regions:
        lines += ["", _comment(region.description), *_region_lines(region)]
    code = "\n".join(lines)
    return f"```python\n{code}\n```" if fence else code + "\n"
