"""The layout picture as a render: the colour sketch at image size, each region outlined and labelled."""

from __future__ import annotations

from PIL import Image

from omostc.backends.base import Seed
from omostc.ir.lowering import lower
from omostc.ir.model import SceneIR
from omostc.ir.pictures import layout_image
from omostc.spec.model import Scene
from omostc.spec.render import RenderOptions


class PreviewBackend:
    name = "preview"

    def lower(self, scene: Scene) -> SceneIR:
        return lower(scene)

    def render(self, ir: SceneIR, options: RenderOptions, seeds: list[Seed], progress=None) -> list[Image.Image]:
        """The layout picture, once per seed: it has no noise, so a plain seed and Omost's batch
        noise (``Noise``) give the same picture."""
        o = options.snapped()
        image = layout_image(ir, o.width, o.height)
        return [image.copy() for _ in seeds]

    def parameters(self, options: RenderOptions) -> list[str]:
        return ["Sampler: none (layout preview)"]
