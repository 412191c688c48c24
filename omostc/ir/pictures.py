"""Pictures of the IR a person can read at a glance, before any GPU time is spent."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from omostc.ir.model import Layer, SceneIR
from omostc.spec.tables import GRID

ELLIPSIS = "…"
LABEL_CHARS = 48  # a label names its layer; longer names are cut here, and again to fit the picture
PAD_X, PAD_Y = 3, 2  # the label's dark background around its text


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def sketch_png(ir: SceneIR) -> bytes:
    """The 90 x 90 colour sketch, pixel for pixel (uint8 RGB, no resampling)."""
    return _png(Image.fromarray(ir.sketch, mode="RGB"))


def _contrast(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def layout_png(ir: SceneIR, width: int, height: int) -> bytes:
    return _png(layout_image(ir, width, height))


def box_pixels(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """A grid box ``(top, bottom, left, right)`` as inclusive pixel corners ``(x0, y0, x1, y1)``
    inside a ``width`` x ``height`` picture, at least one pixel each way: a one-cell box at 64
    pixels (0.7 pixels a cell) is still drawn, and one at the right edge stays in the picture."""
    top, bottom, left, right = box
    x0 = min(max(round(left * width / GRID), 0), width - 1)
    y0 = min(max(round(top * height / GRID), 0), height - 1)
    x1 = min(max(round(right * width / GRID) - 1, x0), width - 1)
    y1 = min(max(round(bottom * height / GRID) - 1, y0), height - 1)
    return x0, y0, x1, y1


@dataclass
class _Label:
    text: str
    x: float
    y: float
    background: tuple[float, float, float, float]  # (left, top, right, bottom), inside the picture


def _style(width: int, height: int) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, int, int]:
    font_size = max(11, min(width, height) // 50)
    font = ImageFont.load_default(size=font_size)  # a FreeTypeFont of that size, or without FreeType a bitmap font
    return font, font_size, max(2, min(width, height) // 256)


def _fitted(draw: ImageDraw.ImageDraw, text: str, font, room: float) -> str:
    """``text``, cut with an ellipsis to at most ``room`` pixels wide (at least its first character)."""
    if draw.textlength(text, font=font) <= room:
        return text
    low, high = 1, len(text)  # the longest prefix that fits with the ellipsis: binary search
    while low < high:
        mid = (low + high + 1) // 2
        if draw.textlength(text[:mid] + ELLIPSIS, font=font) <= room:
            low = mid
        else:
            high = mid - 1
    return text[:low] + ELLIPSIS


def _label_text(n: int, layer: Layer) -> str:
    text = layer.name or layer.prefixes[-1].rstrip(".")
    text = text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + ELLIPSIS
    return f"{n}. {text}  (depth {layer.distance_to_viewer:g})"


def _labels(ir: SceneIR, width: int, height: int, draw: ImageDraw.ImageDraw, font, font_size: int,
            line: int) -> list[_Label]:
    """Where each region's label goes: inside its box's top-left corner where it can, labels of
    boxes sharing a corner stacked, every label cut to the picture's width and kept inside it."""
    taken: dict[tuple[int, int], int] = {}
    out = []
    for n, layer in enumerate(ir.layers[1:], start=1):
        x0, y0, _, _ = box_pixels(layer.box, width, height)
        slot = taken.get((x0, y0), 0)
        taken[(x0, y0)] = slot + 1
        text = _fitted(draw, _label_text(n, layer), font, width - 2 * (PAD_X + 1))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tx = min(float(x0 + 2 * line), width - (right - left) - PAD_X - 1) - left
        ty = min(float(y0 + 2 * line + slot * (font_size + 8)), height - (bottom - top) - PAD_Y - 1) - top
        tx, ty = max(tx, PAD_X - left), max(ty, PAD_Y - top)
        box = (tx + left - PAD_X, ty + top - PAD_Y, tx + right + PAD_X, ty + bottom + PAD_Y)
        background = (max(box[0], 0), max(box[1], 0), min(box[2], width), min(box[3], height))
        out.append(_Label(text, tx, ty, background))
    return out


def label_boxes(ir: SceneIR, width: int, height: int) -> list[tuple[float, float, float, float]]:
    """The background rectangle of each region's label, as ``layout_image`` draws it."""
    font, font_size, line = _style(width, height)
    draw = ImageDraw.Draw(Image.new("RGBA", (width, height)))
    return [label.background for label in _labels(ir, width, height, draw, font, font_size, line)]


def layout_image(ir: SceneIR, width: int, height: int) -> Image.Image:
    """The sketch at image size, each region's box outlined and labelled with its layer number,
    name (or description) and depth; labels are drawn nearest-last so the front reads on top.
    Any box draws at any size: a box smaller than the outline is filled with it."""
    image = Image.fromarray(ir.sketch, mode="RGB").resize((width, height), Image.Resampling.NEAREST).convert("RGBA")
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    font, font_size, line = _style(width, height)
    for layer in ir.layers[1:]:
        x0, y0, x1, y1 = box_pixels(layer.box, width, height)
        outer = max(1, min(line, (x1 - x0 + 1) // 2, (y1 - y0 + 1) // 2))
        draw.rectangle((x0, y0, x1, y1), outline=_contrast(layer.color) + (255,), width=outer)
        if x1 - x0 >= 2 * outer and y1 - y0 >= 2 * outer:  # room for the box's own colour inside
            inner = min(outer, (x1 - x0 - 2 * outer + 1) // 2 or 1, (y1 - y0 - 2 * outer + 1) // 2 or 1)
            draw.rectangle((x0 + outer, y0 + outer, x1 - outer, y1 - outer), outline=layer.color + (255,),
                           width=inner)
    for label in _labels(ir, width, height, draw, font, font_size, line):
        draw.rectangle(label.background, fill=(0, 0, 0, 170))
        draw.text((label.x, label.y), label.text, font=font, fill=(255, 255, 255, 255))
    return Image.alpha_composite(image, overlay).convert("RGB")
