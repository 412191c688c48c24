"""The one interface every rendering backend implements: IR + settings + seeds -> images.

Everything model-specific (text encoders, attention, latents) lives behind it, so the
compiler, the IR and the batch runner never see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from omostc.ir.model import SceneIR
from omostc.spec.tables import DEFAULT_HEIGHT, DEFAULT_WIDTH


@dataclass
class HighResFix:
    scale: float = 1.0  # 1.0 is off
    steps: int = 20
    denoise: float = 0.4


@dataclass
class RenderOptions:
    """Fully resolved settings of one render (defaults are Omost's, OMOST.md section 8)."""

    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT
    steps: int = 25
    cfg: float = 5.0
    negative_prompt: str = "lowres, bad anatomy, bad hands, cropped, worst quality"
    sampler: str = "omost"  # Omost's own DPM++ 2M Karras; or a diffusers scheduler class name
    sketch_strength: float | None = None  # start from the colour sketch with this denoise (0.95-0.99)
    highres: HighResFix = field(default_factory=HighResFix)
    pooled: str = "omost"  # "omost": unprojected pooler_output; "projected": diffusers' text_embeds

    @classmethod
    def from_dict(cls, data: dict) -> "RenderOptions":
        """The inverse of ``dataclasses.asdict``: settings as stored in PNGs and sent to workers."""
        fields = dict(data)
        highres = HighResFix(**fields.pop("highres", {}))
        return cls(**fields, highres=highres)

    def snapped(self) -> "RenderOptions":
        """Width and height rounded down to multiples of 64, as Omost's app does."""
        from dataclasses import replace

        return replace(self, width=max(64, self.width // 64 * 64), height=max(64, self.height // 64 * 64))


class Backend(Protocol):
    name: str

    @property
    def tokenizer(self):
        """The tokenizer scenes are lowered with for this backend (its bags must fit its encoders)."""
        ...

    def render(self, ir: SceneIR, options: RenderOptions, seeds: list[int], progress=None):
        """One PIL image per seed; ``progress(step, steps)`` is called as denoising advances."""
        ...


def resolve_options(spec_render, overrides: dict | None = None, base: RenderOptions | None = None) -> RenderOptions:
    """Settings by precedence: ``overrides`` (command line) > the spec's ``render:`` block > ``base``
    (a profile, else Omost's defaults). ``None`` values never override."""
    from dataclasses import replace

    options = base or RenderOptions()
    if spec_render is not None:
        fields = {k: getattr(spec_render, k) for k in ("width", "height", "steps", "cfg", "negative_prompt")}
        options = replace(options, **{k: v for k, v in fields.items() if v is not None})
        if spec_render.highres is not None:
            h = spec_render.highres
            options = replace(options, highres=replace(options.highres, **{
                k: v for k, v in (("scale", h.scale), ("steps", h.steps), ("denoise", h.denoise)) if v is not None}))
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    highres = {k[len("highres_"):]: overrides.pop(k) for k in list(overrides) if k.startswith("highres_")}
    options = replace(options, **overrides)
    if highres:
        options = replace(options, highres=replace(options.highres, **highres))
    return options
