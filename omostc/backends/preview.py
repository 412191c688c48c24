"""The model-free backend: the layout preview as the picture. It runs anywhere (CI included),
so ``omostc render specs/*.yaml`` always works."""

from __future__ import annotations

from PIL import Image

from ..ir import SceneIR
from ..preview import layout_image
from ..tokenize import default_tokenizer
from .base import RenderOptions


class PreviewBackend:
    name = "preview"

    @property
    def tokenizer(self):
        return default_tokenizer()

    def render(self, ir: SceneIR, options: RenderOptions, seeds: list[int], progress=None) -> list[Image.Image]:
        o = options.snapped()
        image = layout_image(ir, o.width, o.height)
        return [image.copy() for _ in seeds]
