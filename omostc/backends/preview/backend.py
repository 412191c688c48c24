"""The model-free backend: the layout preview as the picture. It runs anywhere (CI included),
so ``omostc render specs/*.yaml`` always works."""

from __future__ import annotations

from PIL import Image

from omostc.backends.base import RenderOptions
from omostc.ir.clip.tokenize import default_tokenizer
from omostc.ir.model import SceneIR
from omostc.ir.pictures import layout_image


class PreviewBackend:
    name = "preview"

    @property
    def tokenizer(self):
        return default_tokenizer()

    def render(self, ir: SceneIR, options: RenderOptions, seeds: list[int], progress=None) -> list[Image.Image]:
        o = options.snapped()
        image = layout_image(ir, o.width, o.height)
        return [image.copy() for _ in seeds]
