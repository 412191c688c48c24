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
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from omostc import __version__
from omostc.backends import registry
from omostc.backends.base import Noise
from omostc.diagnostics import ProvenanceError, SpecError, printable
from omostc.settings import split_known
from omostc.spec.model import Scene
from omostc.spec.render import MAX_IMAGES, MAX_SEED, RenderOptions
from omostc.spec.yamlio import MAX_DEPTH, MAX_INT_DIGITS, dumps_spec, loads_spec

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
    noise: Noise | None = None  # image k of Omost's batch (``batch_seeds: omost``), else the seed's own


def a1111_parameters(scene: Scene, options: RenderOptions, seed: int, stamp: Stamp, noise: Noise | None = None) -> str:
    prompt = "; ".join([scene.global_description.description, *(r.description for r in scene.regions)])
    seeds = [f"Seed: {seed}"] if noise is None else [f"Seed: {noise.seed}", f"Batch size: {noise.batch}",
                                                     f"Batch pos: {noise.index}"]
    fields = [f"Steps: {options.steps}", *stamp.parameters, f"CFG scale: {options.cfg}", *seeds,
              f"Size: {options.width}x{options.height}", f"Model: {stamp.model}", f"Backend: {stamp.backend}"]
    if options.highres.scale > 1.0:
        fields += [f"Hires upscale: {options.highres.scale}", f"Hires steps: {options.highres.steps}",
                   f"Denoising strength: {options.highres.denoise}"]
    fields.append(f"Version: omostc {__version__}")
    return f"{prompt}\nNegative prompt: {options.negative_prompt}\n" + ", ".join(fields)


def png_bytes(image: Image.Image, scene: Scene, options: RenderOptions, seed: int, stamp: Stamp,
              extra_text: dict[str, str] | None = None, noise: Noise | None = None) -> bytes:
    """The PNG, with as much of its making as ``options.provenance`` says (``extra_text``, the
    key, always); ``noise``: the image is one of Omost's batch (recorded, so --from-png redraws it)."""
    info = PngImagePlugin.PngInfo()
    for key, value in (extra_text or {}).items():
        info.add_text(key, value)
    if options.provenance != "none":
        if options.provenance == "spec":
            scene, stamp = replace(scene, provenance=None), _without_local_paths(stamp)
        _add_provenance(info, scene, options, seed, stamp, noise)
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
                    stamp: Stamp, noise: Noise | None = None) -> None:
    info.add_itxt(SPEC_KEY, dumps_spec(scene, schema_ref=None))
    data = {"seed": seed, "model": stamp.model, "backend": stamp.backend, "backend_options": stamp.backend_options,
            "options": options.to_dict(), "omostc": __version__}
    if noise is not None:
        data["noise"] = {"seed": noise.seed, "index": noise.index, "batch": noise.batch}
    info.add_itxt(RENDER_KEY, json.dumps(data, sort_keys=True))
    info.add_itxt("parameters", a1111_parameters(scene, options, seed, stamp, noise))


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
        why = (f"a text chunk is larger than {PngImagePlugin.MAX_TEXT_CHUNK:,} bytes once decompressed"
               if "MAX_TEXT_CHUNK" in str(exc) or "Decompressed" in str(exc) else printable(str(exc)))
        raise ProvenanceError(f"cannot read the image: {why}") from None


def read_provenance(path) -> RenderRecord:
    """How a PNG that omostc wrote was made; ProvenanceError (the caller names the file) for
    anything else. The spec chunk is read as a spec file is (``loads_spec``: bounded, located
    errors); the settings chunk is JSON, bounded in depth and in the length of its numbers."""
    text = text_chunks(path, after_pixels=True)
    if SPEC_KEY not in text and RENDER_KEY not in text and KEY_CHUNK in text:
        raise ProvenanceError("this PNG was rendered with --provenance none: it holds no scene or settings, so it "
                              "cannot be re-rendered")
    if SPEC_KEY not in text or RENDER_KEY not in text:
        raise ProvenanceError("no omostc provenance in this PNG (was it written by omostc render?)")
    return provenance_from_text(str(text[SPEC_KEY]), str(text[RENDER_KEY]), file=str(path))


def provenance_from_text(spec: str, render: str, *, file: str = "<png>") -> RenderRecord:
    """The record of a PNG's two omostc chunks (``file`` names the PNG in errors)."""
    scene = loads_spec(spec, file=f"{file}:{SPEC_KEY}")
    data = _render_chunk(render)
    try:
        model = str(data["model"])
        # PNGs of omostc 0.1 named no backend, and kept the backend's render options among the shared ones
        backend = str(data.get("backend") or registry.legacy_png_backend(model))
        shared, backend_render = split_known(RenderOptions, dict(data["options"]))
        options = RenderOptions.from_dict(shared)
        stamp = Stamp(backend, model, {**backend_render, **dict(data.get("backend_options") or {})})
    except SpecError:
        raise
    except KeyError as exc:
        raise ProvenanceError(f"damaged {RENDER_KEY} chunk: no {exc.args[0]!r}") from None
    except (ValueError, TypeError, AttributeError):
        raise ProvenanceError(f"damaged {RENDER_KEY} chunk: 'options' and 'backend_options' must be "
                              "mappings of settings") from None
    seed = _seed(data.get("seed"))
    return RenderRecord(scene, options, seed, stamp, _noise(data.get("noise"), seed))


def _noise(value: Any, seed: int) -> Noise | None:
    """The chunk's Omost batch, checked: image ``index`` of ``batch`` drawn from ``seed``, saved as seed + index."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"seed", "index", "batch"}:
        raise ProvenanceError(f"damaged {RENDER_KEY} chunk: 'noise' must be a mapping of seed, index and batch")
    start, index, batch = (value[k] for k in ("seed", "index", "batch"))
    if not all(type(v) is int for v in (start, index, batch)) or not (1 <= batch <= MAX_IMAGES and
                                                                       0 <= index < batch and start + index == seed):
        raise ProvenanceError(f"damaged {RENDER_KEY} chunk: 'noise' must be image index (0 to batch - 1) of a batch "
                              f"of at most {MAX_IMAGES} images from a seed, with seed + index the image's seed")
    return Noise(start, index, batch)


def _render_chunk(text: str) -> dict[str, Any]:
    """The settings chunk's JSON object, its numbers at most MAX_INT_DIGITS digits long and its
    nesting at most MAX_DEPTH levels deep."""
    def bounded_int(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_INT_DIGITS:
            raise _Damaged(f"the number {digits[:16]}... ({len(digits.lstrip('-'))} digits) is too long")
        return int(digits)

    try:
        data = json.loads(text, parse_int=bounded_int)
    except _Damaged as exc:
        raise ProvenanceError(f"damaged {RENDER_KEY} chunk: {exc}") from None
    except RecursionError:
        raise ProvenanceError(f"damaged {RENDER_KEY} chunk: nested too deeply") from None
    except ValueError as exc:
        raise ProvenanceError(f"damaged {RENDER_KEY} chunk: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ProvenanceError(f"damaged {RENDER_KEY} chunk: not a JSON object")
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ProvenanceError(f"damaged {RENDER_KEY} chunk: nested too deeply (more than {MAX_DEPTH} levels)")
        texts = [*value, *value.values()] if isinstance(value, dict) else value
        bad = next((t for t in texts if isinstance(t, str) and _SURROGATE.search(t)), None)
        if bad is not None:
            raise ProvenanceError(f"damaged {RENDER_KEY} chunk: {printable(bad[:60])!r} holds a lone UTF-16 "
                                  "surrogate, which is not a character")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return data


_SURROGATE = re.compile("[\ud800-\udfff]")


class _Damaged(ValueError):
    pass


def _seed(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # an integer written as a float, as specs and profiles allow
    if type(value) is not int or not 0 <= value <= MAX_SEED:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise ProvenanceError(f"damaged {RENDER_KEY} chunk: the seed must be a whole number from 0 to {MAX_SEED}, "
                              f"not {shown}")
    return value
