"""Rendered PNGs that carry their provenance, so any image can be re-rendered exactly.

Text chunks: ``omostc.spec`` (the scene spec, YAML), ``omostc.render`` (settings, seed, model,
as JSON), and an A1111-style ``parameters`` chunk that common image tools show.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from typing import Any

from PIL import Image, PngImagePlugin

from omostc import __version__
from omostc.backends.base import RenderOptions
from omostc.diagnostics import ProvenanceError
from omostc.spec.model import Scene
from omostc.spec.yamlio import dumps_spec, loads_spec

SPEC_KEY = "omostc.spec"
RENDER_KEY = "omostc.render"


def a1111_parameters(scene: Scene, options: RenderOptions, seed: int, model: str) -> str:
    prompt = "; ".join([scene.global_description.description, *(r.description for r in scene.regions)])
    fields = [f"Steps: {options.steps}", "Sampler: DPM++ 2M Karras" if options.sampler == "omost" else
              f"Sampler: {options.sampler}", f"CFG scale: {options.cfg}", f"Seed: {seed}",
              f"Size: {options.width}x{options.height}", f"Model: {model}"]
    if options.highres.scale > 1.0:
        fields += [f"Hires upscale: {options.highres.scale}", f"Hires steps: {options.highres.steps}",
                   f"Denoising strength: {options.highres.denoise}"]
    fields.append(f"Version: omostc {__version__}")
    return f"{prompt}\nNegative prompt: {options.negative_prompt}\n" + ", ".join(fields)


def png_bytes(image: Image.Image, scene: Scene, options: RenderOptions, seed: int, model: str,
              extra_text: dict[str, str] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (extra_text or {}).items():
        info.add_text(key, value)
    info.add_itxt(SPEC_KEY, dumps_spec(scene, schema_ref=None))
    info.add_itxt(RENDER_KEY, json.dumps({"seed": seed, "model": model, "options": asdict(options),
                                          "omostc": __version__}, sort_keys=True))
    info.add_itxt("parameters", a1111_parameters(scene, options, seed, model))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def read_provenance(path) -> tuple[Scene, RenderOptions, int, str]:
    """(scene, options, seed, model) from a PNG that omostc wrote; ProvenanceError (the caller
    names the file) for anything else."""
    try:
        with Image.open(path) as im:
            text: dict[str, Any] = dict(im.text)
    except OSError as exc:
        raise ProvenanceError(f"cannot read the image: {exc}") from None
    if SPEC_KEY not in text or RENDER_KEY not in text:
        raise ProvenanceError("no omostc provenance in this PNG (was it written by omostc render?)")
    scene = loads_spec(text[SPEC_KEY], file=f"{path}:{SPEC_KEY}")
    try:
        data = json.loads(text[RENDER_KEY])
        return scene, RenderOptions.from_dict(data["options"]), int(data["seed"]), str(data["model"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ProvenanceError(f"damaged {RENDER_KEY} chunk ({type(exc).__name__}: {exc})") from None
