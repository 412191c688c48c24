"""Pictures of the IR a person can read at a glance, before any GPU time is spent."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

from omostc.ir.model import SceneIR
from omostc.spec.tables import GRID


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


def layout_image(ir: SceneIR, width: int, height: int) -> Image.Image:
    """The sketch at image size, each region's box outlined and labelled with its layer number,
    name (or description) and depth; labels are drawn nearest-last so the front reads on top."""
    image = Image.fromarray(ir.sketch, mode="RGB").resize((width, height), Image.Resampling.NEAREST).convert("RGBA")
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    font_size = max(11, min(width, height) // 50)
    font = ImageFont.load_default(size=font_size)  # a FreeTypeFont of that size, or without FreeType a bitmap font
    line = max(2, min(width, height) // 256)
    taken: dict[tuple[int, int], int] = {}
    for n, layer in enumerate(ir.layers[1:], start=1):
        top, bottom, left, right = layer.box
        x0, y0 = round(left * width / GRID), round(top * height / GRID)
        x1, y1 = round(right * width / GRID) - 1, round(bottom * height / GRID) - 1
        ink = _contrast(layer.color)
        draw.rectangle((x0, y0, x1, y1), outline=ink + (255,), width=line)
        draw.rectangle((x0 + line, y0 + line, x1 - line, y1 - line), outline=layer.color + (255,), width=line)
        text = layer.name or layer.prefixes[-1].rstrip(".")
        text = text if len(text) <= 48 else text[:47] + "…"
        label = f"{n}. {text}  (depth {layer.distance_to_viewer:g})"
        slot = taken.get((x0, y0), 0)
        taken[(x0, y0)] = slot + 1
        tx: float = x0 + 2 * line
        ty = y0 + 2 * line + slot * (font_size + 8)
        text_width = draw.textlength(label, font=font)
        tx = max(2, min(tx, width - text_width - 6))  # keep labels of boxes at the right edge readable
        bbox = draw.textbbox((tx, ty), label, font=font)
        draw.rectangle((bbox[0] - 3, bbox[1] - 2, bbox[2] + 3, bbox[3] + 2), fill=(0, 0, 0, 170))
        draw.text((tx, ty), label, font=font, fill=(255, 255, 255, 255))
    return Image.alpha_composite(image, overlay).convert("RGB")
