"""Rendered PNGs that carry their provenance, so any image can be re-rendered exactly.

Text chunks: ``omostc.spec`` (the scene spec, YAML), ``omostc.render`` (settings, seed, backend,
its options and model, as JSON), and an A1111-style ``parameters`` chunk that common image tools
show, saying what the backend actually did; ``omostc.key`` (a hash) lets a batch skip what is
rendered already. How much is written is the ``provenance`` setting: ``full`` (all of it: the
scene's provenance holds the LLM conversation, the prompt and the input's path), ``spec`` (the
scene without its provenance, local paths by file name), ``none`` (the key only).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from omostc import __version__
from omostc.backends import registry
from omostc.diagnostics import ProvenanceError, SettingsError, SpecError
from omostc.settings import split_known
from omostc.spec.model import Scene
from omostc.spec.render import RenderOptions, seed_problem
from omostc.spec.yamlio import dumps_spec, loads_spec

SPEC_KEY = "omostc.spec"
RENDER_KEY = "omostc.render"
KEY_CHUNK = "omostc.key"  # the key an output was rendered with (runner.BatchItem.key): a hash


@dataclass
class Stamp:
    """What made a picture besides its scene, settings and seed: the backend, its options, the model."""

    backend: str
    model: str
    backend_options: dict[str, Any] = field(default_factory=dict)
    parameters: list[str] = field(default_factory=list)  # the backend's own A1111 fields


@dataclass
class RenderRecord:
    """Everything a PNG says about how it was made."""

    scene: Scene
    options: RenderOptions
    seed: int
    stamp: Stamp


def a1111_parameters(scene: Scene, options: RenderOptions, seed: int, stamp: Stamp) -> str:
    prompt = "; ".join([scene.global_description.description, *(r.description for r in scene.regions)])
    fields = [f"Steps: {options.steps}", *stamp.parameters, f"CFG scale: {options.cfg}", f"Seed: {seed}",
              f"Size: {options.width}x{options.height}", f"Model: {stamp.model}", f"Backend: {stamp.backend}"]
    if options.highres.scale > 1.0:
        fields += [f"Hires upscale: {options.highres.scale}", f"Hires steps: {options.highres.steps}",
                   f"Denoising strength: {options.highres.denoise}"]
    fields.append(f"Version: omostc {__version__}")
    return f"{prompt}\nNegative prompt: {options.negative_prompt}\n" + ", ".join(fields)


def png_bytes(image: Image.Image, scene: Scene, options: RenderOptions, seed: int, stamp: Stamp,
              extra_text: dict[str, str] | None = None) -> bytes:
    """The PNG, with as much of its making as ``options.provenance`` says (``extra_text``, the
    key, always)."""
    info = PngImagePlugin.PngInfo()
    for key, value in (extra_text or {}).items():
        info.add_text(key, value)
    if options.provenance != "none":
        if options.provenance == "spec":
            scene, stamp = replace(scene, provenance=None), _without_local_paths(stamp)
        _add_provenance(info, scene, options, seed, stamp)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _without_local_paths(stamp: Stamp) -> Stamp:
    """The stamp with each local path (the model, a VAE, ...) by its file name only: a path names
    its owner's folders (``/home/alice/...``); a hub id, which no local file has, is kept."""
    def name(value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        local = os.path.isabs(value) or value.startswith(("~", "./", "../")) or os.path.exists(value)
        return Path(value).name or value if local else value

    options = {k: name(v) for k, v in stamp.backend_options.items()}
    return replace(stamp, model=name(stamp.model), backend_options=options, parameters=list(stamp.parameters))


def _add_provenance(info: PngImagePlugin.PngInfo, scene: Scene, options: RenderOptions, seed: int,
                    stamp: Stamp) -> None:
    info.add_itxt(SPEC_KEY, dumps_spec(scene, schema_ref=None))
    info.add_itxt(RENDER_KEY, json.dumps({"seed": seed, "model": stamp.model, "backend": stamp.backend,
                                          "backend_options": stamp.backend_options, "options": options.to_dict(),
                                          "omostc": __version__}, sort_keys=True))
    info.add_itxt("parameters", a1111_parameters(scene, options, seed, stamp))


def text_chunks(path, *, after_pixels: bool = False) -> dict[str, str]:
    """A PNG's text chunks that come before its pixels (omostc writes all of its own there), read
    without decoding the pixels: an image of any size, or one whose header claims 40000 x 40000
    pixels, costs nothing. ``after_pixels``: when omostc's chunks are not there, also those after
    the pixels (a tool that re-saved the file may have moved them), which decodes the image.
    ProvenanceError for a file that is not a readable image."""
    try:
        with Image.open(path) as im:
            text = {k: v for k, v in im.info.items() if isinstance(k, str) and isinstance(v, str)}
            if after_pixels and SPEC_KEY not in text and KEY_CHUNK not in text:
                text.update({k: v for k, v in dict(getattr(im, "text", {})).items() if isinstance(v, str)})
            return text
    except Image.DecompressionBombError:
        raise ProvenanceError("cannot read the image: its header claims more pixels than Pillow opens "
                              "(a damaged or hostile file)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # ValueError: a text chunk larger than Pillow reads (PngImagePlugin.MAX_TEXT_CHUNK)
        raise ProvenanceError(f"cannot read the image: {exc}") from None


def read_provenance(path) -> RenderRecord:
    """How a PNG that omostc wrote was made; ProvenanceError (the caller names the file) for
    anything else."""
    text = text_chunks(path, after_pixels=True)
    if SPEC_KEY not in text and RENDER_KEY not in text and KEY_CHUNK in text:
        raise ProvenanceError("this PNG was rendered with --provenance none: it holds no scene or settings, so it "
                              "cannot be re-rendered")
    if SPEC_KEY not in text or RENDER_KEY not in text:
        raise ProvenanceError("no omostc provenance in this PNG (was it written by omostc render?)")
    scene = loads_spec(text[SPEC_KEY], file=f"{path}:{SPEC_KEY}")
    try:
        data = json.loads(text[RENDER_KEY])
        model = str(data["model"])
        # PNGs of omostc 0.1 named no backend, and kept the backend's render options among the shared ones
        backend = str(data.get("backend") or registry.legacy_png_backend(model))
        shared, backend_render = split_known(RenderOptions, dict(data["options"]))
        options = RenderOptions.from_dict(shared)
        stamp = Stamp(backend, model, {**backend_render, **dict(data.get("backend_options") or {})})
        why = seed_problem(data["seed"])
        if why:
            raise SettingsError(f"its {RENDER_KEY} chunk: {why}", file=str(path))
        return RenderRecord(scene, options, int(data["seed"]), stamp)
    except SpecError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProvenanceError(f"damaged {RENDER_KEY} chunk ({type(exc).__name__}: {exc})") from None
