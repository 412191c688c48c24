"""Render settings every backend shares, declared once (``omostc.settings``).

``RenderOptions`` is a fully resolved render (defaults are Omost's, OMOST.md section 8).
``RenderSettings`` is the scene spec's ``render:`` block: the same fields, each optional, plus
the seed; it is derived from ``RenderOptions``, so a spec, a profile, a PNG chunk and a
command-line flag are checked by the same rules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

from omostc.settings import KEY, from_data, setting, to_data
from omostc.spec.tables import DEFAULT_HEIGHT, DEFAULT_WIDTH

MAX_SIDE = 8192
SIZE_MULTIPLE = 64  # Omost's app floors width and height to multiples of 64
DEFAULT_SEED = 12345
MAX_SEED = 2**63 - 1
DEFAULT_NEGATIVE = "lowres, bad anatomy, bad hands, cropped, worst quality"


@dataclass
class HighResFix:
    """Omost's hi-res pass: upscale the image, encode it, and denoise it again."""

    scale: float = setting(1.0, minimum=1, maximum=8, help="Upscale factor of the hi-res pass (1: off).")
    steps: int = setting(20, minimum=1, maximum=1000, help="Denoising steps of the hi-res pass.")
    denoise: float = setting(0.4, exclusive_minimum=0, maximum=1, help="How much the hi-res pass denoises.")


@dataclass
class RenderOptions:
    """Render settings (above the profile's, below command-line flags)."""

    width: int = setting(DEFAULT_WIDTH, minimum=64, maximum=MAX_SIDE, multiple_of=8,
                         help=f"Image width in pixels (default {DEFAULT_WIDTH}); floored to a multiple of 64.")
    height: int = setting(DEFAULT_HEIGHT, minimum=64, maximum=MAX_SIDE, multiple_of=8,
                          help=f"Image height in pixels (default {DEFAULT_HEIGHT}); floored to a multiple of 64.")
    steps: int = setting(25, minimum=1, maximum=1000, help="Denoising steps (default 25).")
    cfg: float = setting(5.0, minimum=0, maximum=100, help="Classifier-free guidance scale (default 5).")
    negative_prompt: str = setting(DEFAULT_NEGATIVE, help="The negative prompt (default: Omost's).")
    sketch_strength: float | None = setting(
        None, exclusive_minimum=0, maximum=1,
        help="Start from the colour sketch, denoising this much (0.95 to 0.99 work well).")
    highres: HighResFix = setting(default_factory=HighResFix, help="Omost's hi-res pass.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenderOptions:
        """The inverse of ``dataclasses.asdict``: settings as stored in PNGs and sent to workers."""
        options: RenderOptions = from_data(cls, data)
        return options

    def to_dict(self) -> dict[str, Any]:
        return to_data(self)

    def snapped(self) -> RenderOptions:
        """Width and height rounded down to multiples of 64, as Omost's app does."""
        return replace(self, width=max(SIZE_MULTIPLE, self.width // SIZE_MULTIPLE * SIZE_MULTIPLE),
                       height=max(SIZE_MULTIPLE, self.height // SIZE_MULTIPLE * SIZE_MULTIPLE))


def _overrides(cls: type, name: str, extra: list[tuple[str, str, Any]] | None = None) -> Any:
    """A dataclass with the fields (and Settings) of ``cls``, each optional, None meaning "not set
    here"; a nested settings class becomes its own overrides class (``OVERRIDES``)."""
    fields: list[tuple[str, str, Any]] = []
    for f in dataclasses.fields(cls):
        tp = str(f.type).removesuffix(" | None")
        fields.append((f.name, f"{OVERRIDES.get(tp, tp)} | None",
                       dataclasses.field(default=None, metadata={KEY: f.metadata[KEY]})))
    return dataclasses.make_dataclass(name, [*fields, *(extra or [])],
                                      namespace={"__doc__": cls.__doc__, "__module__": __name__})


OVERRIDES = {"HighResFix": "HighRes"}
HighRes = _overrides(HighResFix, "HighRes")
RenderSettings = _overrides(RenderOptions, "RenderSettings", [
    ("seed", "int | None", setting(None, minimum=0, maximum=MAX_SEED, help="The first seed (default 12345)."))])


def resolve_options(spec_render: Any = None, overrides: dict[str, Any] | None = None,
                    base: RenderOptions | None = None) -> RenderOptions:
    """Settings by precedence: ``overrides`` (command line, nested data) > the spec's ``render:``
    block > ``base`` (a profile, else Omost's defaults). ``None`` values never override."""
    data = to_data(base or RenderOptions())
    for layer in (_set_fields(spec_render), overrides or {}):
        for key, value in layer.items():
            if key == "seed" or value is None:
                continue
            if isinstance(value, dict):
                data[key] = {**data[key], **{k: v for k, v in value.items() if v is not None}}
            else:
                data[key] = value
    return RenderOptions.from_dict(data)


def _set_fields(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
        if value is not None:
            out[f.name] = value
    return out
