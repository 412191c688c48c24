"""Render settings every backend shares, declared once (``omostc.settings``).

``RenderOptions`` is a fully resolved render (defaults are Omost's, OMOST.md section 8).
``RenderSettings`` is the scene spec's ``render:`` block: the same fields, each optional, plus
the seed; it is derived from ``RenderOptions``, so a spec, a profile, a PNG chunk and a
command-line flag are checked by the same rules.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, replace
from typing import Any

from omostc.diagnostics import Diagnostic, SettingsError
from omostc.settings import KEY, broken_rule, fields_of, from_data, setting, to_data
from omostc.spec.tables import DEFAULT_HEIGHT, DEFAULT_WIDTH

MAX_SIDE = 8192
SIZE_MULTIPLE = 64  # Omost's app floors sizes to multiples of 64; omostc asks for them (no silent change)
# The largest picture a render may make, hi-res pass included: width x height x scale^2 at most
# 64 megapixels (2^26 pixels: 8192 x 8192, or 4096 x 4096 upscaled 2x). Without it 8192 x 8192
# upscaled 8x asks for a 65536 x 65536 picture: 12 GiB of RGB before the VAE even starts.
MAX_PIXELS = 64 * 2**20
# Regions a scene may have to be rendered. The largest scene in the corpus has 8 (35 CLIP chunks);
# each region adds at least one 77-token chunk that every cross-attention layer attends to, with a
# (pixels x tokens) mask, at every step. Compiling and lowering have no such limit.
MAX_REGIONS = 64
MAX_IMAGES = 1000  # images per spec (--images, a profile's images or its list of seeds)
MIN_STRENGTH = 0.01  # Omost's sampler makes steps / strength sigmas: 1e-300 would never be allocated
PROVENANCE = ("full", "spec", "none")  # what a PNG carries: see RenderOptions.provenance
BATCH_SEEDS = ("separate", "omost")  # how the images of a spec get their noise: see RenderOptions.batch_seeds
DEFAULT_SEED = 12345
MAX_SEED = 2**63 - 1
DEFAULT_NEGATIVE = "lowres, bad anatomy, bad hands, cropped, worst quality"


@dataclass
class HighResFix:
    """Omost's hi-res pass: upscale the image, encode it, and denoise it again."""

    scale: float = setting(1.0, minimum=1, maximum=8,
                           help="Upscale factor of the hi-res pass (1: off); width x height x scale^2 "
                                "may be at most 64 megapixels.")
    steps: int = setting(20, minimum=1, maximum=1000, help="Denoising steps of the hi-res pass.")
    denoise: float = setting(0.4, minimum=MIN_STRENGTH, maximum=1, help="How much the hi-res pass denoises.")


@dataclass
class RenderOptions:
    """Render settings (above the profile's, below command-line flags)."""

    width: int = setting(DEFAULT_WIDTH, minimum=64, maximum=MAX_SIDE, multiple_of=SIZE_MULTIPLE,
                         help=f"Image width in pixels (default {DEFAULT_WIDTH}): a multiple of 64, as Omost's "
                              "app renders; rendered as given, never rounded.")
    height: int = setting(DEFAULT_HEIGHT, minimum=64, maximum=MAX_SIDE, multiple_of=SIZE_MULTIPLE,
                          help=f"Image height in pixels (default {DEFAULT_HEIGHT}): a multiple of 64, as Omost's "
                               "app renders; rendered as given, never rounded.")
    steps: int = setting(25, minimum=1, maximum=1000, help="Denoising steps (default 25).")
    cfg: float = setting(5.0, minimum=0, maximum=100, help="Classifier-free guidance scale (default 5).")
    negative_prompt: str = setting(DEFAULT_NEGATIVE, help="The negative prompt (default: Omost's).")
    sketch_strength: float | None = setting(
        None, minimum=MIN_STRENGTH, maximum=1,
        help="Start from the colour sketch, denoising this much (0.95 to 0.99 work well).")
    highres: HighResFix = setting(default_factory=HighResFix, help="Omost's hi-res pass.")
    batch_seeds: str = setting(
        "separate", choices=BATCH_SEEDS,
        help="How a spec's images get their noise. separate: image k is seed S+k rendered on its own, so it "
             "depends on its seed alone; omost: as Omost's app, the N images of one seed S are one batch drawn "
             "from one generator seeded S (image k is saved as S+k.png and records its batch), so Omost's second "
             "and later images are reproduced.")
    provenance: str = setting(
        "full", choices=PROVENANCE, pixels=False,
        help="What each PNG tells of its making. full: the scene spec with its provenance (the LLM "
             "conversation and prompt, the input's path), the settings, seed and model, so --from-png "
             "re-renders it; spec: the same without the scene's provenance, and a local model's path by "
             "its file name only; none: no omostc chunks but the key (a hash), so it cannot be re-rendered.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenderOptions:
        """The inverse of ``dataclasses.asdict``: settings as stored in PNGs and sent to workers."""
        options: RenderOptions = _whole_numbers(from_data(cls, data))
        return options

    def to_dict(self) -> dict[str, Any]:
        return to_data(self)

    def snapped(self) -> RenderOptions:
        """Width and height rounded down to multiples of 64, as Omost's app does. Checked options
        (``check_options``: every source is) are multiples of 64 already, so this changes only
        options made in code and never checked."""
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


def _whole_numbers(obj: Any) -> Any:
    """Integer settings given as whole floats (``steps: 20.0`` in JSON or YAML) become ints, so
    the renderers get the type they expect; other values are left for the checks to report."""
    for f, tp, _ in fields_of(type(obj)):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            _whole_numbers(value)
        elif tp is int and isinstance(value, float) and value.is_integer():
            setattr(obj, f.name, int(value))
    return obj


def _shape_problems(obj: Any, prefix: str = "") -> list[str]:
    """Values of the wrong kind altogether (data from a PNG chunk is not schema-checked): a
    required setting left null, a nested block that is not a mapping."""
    out = []
    for f, tp, _ in fields_of(type(obj)):
        value, name = getattr(obj, f.name), prefix + f.name
        nested = tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None
        if nested is not None:
            if isinstance(value, nested):
                out += _shape_problems(value, f"{name}.")
            else:
                out.append(f"{name} must be a mapping of its settings, not {value!r}")
        elif value is None and type(None) not in typing.get_args(tp):
            out.append(f"{name} must be given, not null")
        elif str in (tp, *typing.get_args(tp)) and value is not None and not isinstance(value, str):
            out.append(f"{name} must be text, not {value!r}")
    return out


def pixel_problem(options: RenderOptions) -> str | None:
    """Why the render's largest picture (after the hi-res pass) is too large, or None."""
    scale = options.highres.scale
    pixels = options.width * options.height * scale * scale
    if pixels <= MAX_PIXELS:
        return None
    w, h = round(options.width * scale), round(options.height * scale)
    return (f"the render would make a {w} x {h} picture ({options.width} x {options.height} with hi-res scale "
            f"{scale:g}), {pixels / 2**20:.0f} megapixels; at most 64 megapixels (width x height x scale^2 "
            f"<= {MAX_PIXELS:,}) are allowed")


def options_problems(options: RenderOptions) -> list[str]:
    """Every rule resolved render settings break: each setting's own range (``omostc.settings``),
    then the rules across settings (the pixel budget)."""
    from omostc.settings import check

    shape = _shape_problems(options)
    if shape:
        return shape
    try:
        check(options)
    except SettingsError as exc:
        return [d.message for d in exc.diagnostics]
    why = pixel_problem(options)
    return [why] if why else []


def check_options(options: RenderOptions, *, source: str, where: str = "") -> RenderOptions:
    """``options``, or SettingsError naming ``source`` (and ``where`` in it) with every rule they break."""
    problems = options_problems(options)
    if problems:
        raise SettingsError([Diagnostic("error", where + p, file=source) for p in problems])
    return options


SEED_RULE = setting(help="seed", minimum=0, maximum=MAX_SEED).metadata[KEY]


def seed_problem(seed: Any) -> str | None:
    """Why ``seed`` is not a seed (a whole number from 0 to 2^63 - 1), or None."""
    why = broken_rule(int, SEED_RULE, seed)
    return f"seed {why}" if why else None
