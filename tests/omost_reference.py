"""Omost's own approach, written from OMOST.md, as a test oracle and benchmark baseline.

It runs a program with ``exec`` against a Canvas class, exactly as Omost's loader does; it is
used only by the tests and benchmarks, on the corpus files, never by omostc. Builtins are
restricted so a stray program cannot reach the machine.
"""

from __future__ import annotations

import difflib
import re
import types

import numpy as np

from omostc.spec.tables import AREAS, COLORS, LOCATIONS, OFFSETS

_FENCE = re.compile(r"```python\n(.*?)\n```", re.DOTALL)


def closest_name(value: str, options) -> str:
    value = value.lower()
    match = difflib.get_close_matches(value, list(options), n=1, cutoff=0.5)
    if not match:
        raise ValueError(f"The value [{value}] is not valid!")
    return match[0]


def safe_str(x: str) -> str:
    return x.strip(",. ") + "."


class Canvas:
    def __init__(self):
        self.components = []
        self.color = None
        self.prefixes = []
        self.suffixes = []

    def set_global_description(self, description, detailed_descriptions, tags, HTML_web_color_name):
        assert isinstance(description, str)
        assert isinstance(detailed_descriptions, list) and all(isinstance(i, str) for i in detailed_descriptions)
        assert isinstance(tags, str)
        name = closest_name(HTML_web_color_name, COLORS)
        self.color = np.array([[COLORS[name]]], dtype=np.uint8)
        self.prefixes = [safe_str(description)]
        self.suffixes = [safe_str(x) for x in detailed_descriptions + [tags]]

    def add_local_description(self, location=None, offset=None, area=None, distance_to_viewer=None,
                              description=None, detailed_descriptions=None, tags=None, atmosphere=None,
                              style=None, quality_meta=None, HTML_web_color_name=None, *, name=None, bbox=None):
        # name= and bbox= are the corpus's variants, not Omost's; bbox is [x, y, w, h], top-left origin.
        assert isinstance(description, str)
        assert isinstance(distance_to_viewer, (int, float)) and distance_to_viewer > 0
        assert isinstance(detailed_descriptions, list) and all(isinstance(i, str) for i in detailed_descriptions)
        for x in (tags, atmosphere, style, quality_meta):
            assert isinstance(x, str)
        if bbox is None:
            xb, yb = LOCATIONS[closest_name(location, LOCATIONS)]
            xo, yo = OFFSETS[closest_name(offset, OFFSETS)]
            w, h = AREAS[closest_name(area, AREAS)]
            rect = (yb + yo - h // 2, yb + yo + h // 2, xb + xo - w // 2, xb + xo + w // 2)
        else:
            x, y, w, h = bbox
            rect = (y, y + h, x, x + w)
        rect = [max(0, min(90, i)) for i in rect]
        color = np.array([[COLORS[closest_name(HTML_web_color_name, COLORS)]]], dtype=np.uint8)
        prefixes = [safe_str(x) for x in self.prefixes + [description]]
        suffixes = [safe_str(x) for x in detailed_descriptions + [tags, atmosphere, style, quality_meta]]
        self.components.append(dict(rect=rect, distance_to_viewer=distance_to_viewer, color=color,
                                    prefixes=prefixes, suffixes=suffixes, name=name))

    def process(self):
        self.components = sorted(self.components, key=lambda x: x["distance_to_viewer"], reverse=True)
        initial_latent = np.zeros(shape=(90, 90, 3), dtype=np.float32) + self.color
        for c in self.components:
            a, b, cc, d = c["rect"]
            initial_latent[a:b, cc:d] = 0.7 * c["color"] + 0.3 * initial_latent[a:b, cc:d]
        initial_latent = initial_latent.clip(0, 255).astype(np.uint8)
        conditions = [dict(mask=np.ones((90, 90), np.float32), prefixes=self.prefixes, suffixes=self.suffixes,
                           rect=[0, 90, 0, 90], color=self.color.reshape(3).tolist())]
        for c in self.components:
            a, b, cc, d = c["rect"]
            m = np.zeros((90, 90), np.float32)
            m[a:b, cc:d] = 1.0
            conditions.append(dict(mask=m, prefixes=c["prefixes"], suffixes=c["suffixes"], rect=list(c["rect"]),
                                   color=c["color"].reshape(3).tolist()))
        return dict(initial_latent=initial_latent, bag_of_conditions=conditions)


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    if name.split(".")[0] == "lib_omost":
        module = types.ModuleType(name)
        module.Canvas = Canvas
        return module
    raise ImportError(f"import of {name!r} refused by the test oracle")


_SAFE_BUILTINS = {"__import__": _import, "True": True, "False": False, "None": None}


def run_program(code: str) -> Canvas:
    """exec a program the way Omost's loader does (builtins restricted); return its canvas."""
    local_vars = {"Canvas": Canvas}
    exec(code, {"__builtins__": _SAFE_BUILTINS}, local_vars)
    canvas = local_vars.get("canvas")
    if not isinstance(canvas, Canvas):
        raise ValueError("Code block must produce valid canvas var!")
    return canvas


def from_bot_response(response: str) -> Canvas:
    """Omost's loader: the first ```python fence, which must contain `canvas = Canvas()`."""
    matched = _FENCE.search(response)
    if not matched:
        raise ValueError("Response does not contain codes!")
    code = matched.group(1)
    if "canvas = Canvas()" not in code:
        raise ValueError("Code block must include valid canvas var!")
    return run_program(code)


def extract_program_code(path) -> str:
    """The program text of a corpus file, found the way omostc finds it (fences, quoting)."""
    from omostc.compiler.source import extract_program

    return extract_program(path.read_text(encoding="utf-8")).code


def bags(prefixes, suffixes, encode):
    """Omost's encode_bag_of_subprompts_greedy up to the token ids, written from OMOST.md 5."""
    prefix_ids = [t for p in prefixes for t in encode(p)]
    items = [encode(s)[:75] for s in suffixes]
    bags, current, total = [], [], 0
    for i, ids in enumerate(items):
        if total + len(ids) > 75 - len(prefix_ids):
            if current:
                bags.append(current)
            current, total = [i], len(ids)
        else:
            current.append(i)
            total += len(ids)
    if current:
        bags.append(current)
    chunks = []
    for bag in bags:
        merged = prefix_ids + [t for i in bag for t in items[i]]
        chunks.append(([49406] + merged[:75] + [49407] + [49407] * 75)[:77])
    return bags, chunks
